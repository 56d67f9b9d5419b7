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

Design choices:

- **Tables.** ``payments``: one row per Stripe PaymentIntent, charge and refund (amounts in integer minor
  units, currency upper-cased, Odoo order/invoice from ``metadata.order_id`` / ``metadata.invoice``, soft
  links: a payment for an order or customer the warehouse does not know is stored all the same).
  ``shipment_events``: one row per EasyPost tracker with its latest status. The history of scans is not kept
  as rows: every tracker event carries the carrier's full scan list (``tracking_details``), and
  ``processed_events`` records every event applied; a per-scan table is the next step if someone needs it.
- **Ties.** Stripe's ``created`` has whole seconds; the status's lifecycle rank is added in microseconds
  (``extract.PAYMENT_STATUS_RANK``), so ``succeeded`` wins over ``processing`` from the same second.
- **Ack protocol.** Commit (effect + ledger) → ack. A crash between the two redelivers the batch, whose
  ids are then all in the ledger: counted as duplicates, no second effect. On the SQL queue in the
  warehouse the queue rows are deleted (and dead letters written) inside the commit: no window at all.
- **Failures.** Permanent (unparseable, unknown event type, fails its contract, unknown HubSpot object or
  property, a value the warehouse refuses): dead-lettered at once with a check and a reason, stage
  ``event``, replayable with ``integration-assets events replay``. Transient (warehouse unreachable): retried
  in place, then given back with ``Queue.release`` (no attempt spent), never dead-lettered.
- **Dagster.** The sensor only looks at the queue's depth and launches one run per drain (run key = drain
  id, unique per launch); the run's op consumes the deliveries itself and acks after its commits, so nothing
  is acked in a tick (docs/DAGSTER.md §4). One drain in flight per queue (sources share one queue): the sensor
  skips while one is queued or running, and runs carry the ``integration/event-queue`` tag for
  ``tag_concurrency_limits``.
- **Throughput.** Batches of 10,000 (one transaction, one COPY and merge per table), the next batch taken
  and planned in a worker thread while the current one is written (``bench/events_drain.py``).
"""
