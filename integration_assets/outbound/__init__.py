"""The outbound flow: warehouse changes → the other systems (deal won → Odoo order → EasyPost label →
write-back), through the transactional outbox (docs/ARCHITECTURE.md, "The outbound flow").

Plain Python, no Dagster: ``relay`` publishes the outbox to one queue per step, ``runner`` consumes a step's
queue, ``steps`` hold the per-hop logic, ``ledger`` the exactly-once bookkeeping, ``replay`` reruns an
outbound dead letter.
"""
