"""The event path after the queue: apply webhook events to the warehouse, exactly one effect per event.

Plain Python, no Dagster (``assets/events.py`` and ``sensors/events.py`` wrap it). The contract
(docs/RELIABILITY.md, "The promises"): at-least-once in, effectively-once rows out.

- ``extract``: plan a batch with no database. Bodies are parsed once, routed (``routing``), keyed and mapped
  with the vectorised contract engine (``frames`` pulls the contract's fields out of the JSON); an event
  delivered twice in the batch is kept once, the same key with other content is a key collision.
- ``apply``: one batch = one transaction. Canonical rows are staged and merged set-based (newer wins by
  ``source_updated_at``, so an older event never overwrites newer state); the ``processed_events`` ledger
  rows (``ledger``) are written in the same transaction; an event key already in the ledger is a duplicate
  and changes nothing when its content hash is the same, and a key collision (dead-lettered) when it is not.
- ``settle``: deliveries are acked only after the commit, or inside the transaction when the queue
  ``supports_transactional_ack`` (the SQL queue in the warehouse); rejected events are dead-lettered through
  ``dead_letters.store``; a batch that cannot apply now is given back.
- ``batch`` and ``drain``: receive batches, apply them, give transient failures back without spending
  attempts, isolate events the warehouse refuses, report. What ``integration-assets events drain`` and the
  Dagster run do.
- ``hubspot``: HubSpot property changes patch existing contacts/companies/deals (unknown objects are
  dead-lettered, not deferred: see that module).
- ``replay``: re-enqueue event dead letters (``replay_events``, called by ``dlq replay``).

The reasoning: docs/DESIGN.md, "The event path: design choices (events/)".
"""
