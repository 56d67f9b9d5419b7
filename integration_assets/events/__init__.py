"""The event path after the queue: apply webhook events to the warehouse, exactly one effect per event.

Plain Python, no Dagster (``assets/events.py`` and ``sensors/events.py`` wrap it). The contract
(RELIABILITY.md): at-least-once in, effectively-once rows out.

- ``processor``: one batch = one transaction. Bodies are parsed once, routed (``routing``) and mapped with
  the vectorised contract engine; canonical rows are staged and merged set-based (newer wins by
  ``source_updated_at``, so an older event never overwrites newer state); the ``processed_events`` ledger
  rows (``tables``) are written in the same transaction; an event id already in the ledger is a duplicate
  and changes nothing. Deliveries are acked only after the commit (on the SQL queue living in the warehouse,
  the ack is part of the transaction).
- ``drain``: receive batches, apply them, give transient failures back without spending attempts, isolate
  events the warehouse refuses, report. What ``integration-assets events drain`` and the Dagster run do.
- ``hubspot``: HubSpot property changes patch existing contacts/companies/deals (unknown objects are
  dead-lettered, not deferred: see that module).
- ``replay``: re-enqueue event dead letters (``integration-assets events replay``).

Design choices:

- **Tables.** ``payments``: one row per Stripe PaymentIntent, charge and refund (amounts in integer minor
  units, currency upper-cased, Odoo order/invoice from ``metadata.order_id`` / ``metadata.invoice``, soft
  links: a payment for an order or customer the warehouse does not know is stored all the same).
  ``shipment_events``: one row per EasyPost tracker with its latest status. The history of scans is not kept
  as rows: every tracker event carries the carrier's full scan list (``tracking_details``), and
  ``processed_events`` records every event applied; a per-scan table is the next step if someone needs it.
- **Ties.** Stripe's ``created`` has whole seconds; the status's lifecycle rank is added in microseconds
  (``processor.PAYMENT_STATUS_RANK``), so ``succeeded`` wins over ``processing`` from the same second.
- **Ack protocol.** Commit (effect + ledger) → ack. A crash between the two redelivers the batch, whose
  ids are then all in the ledger: counted as duplicates, no second effect.
"""
