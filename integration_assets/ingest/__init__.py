"""The file flow, plain Python (no Dagster): the Dagster layer, ``sync`` and the CLI call it.

- ``inbox``: what the inbox holds and whether a content is already loaded (read only; one hash per file).
- ``archive``: the moves to ``archive/`` and ``rejected/`` (with their ledger rows and dead letters), ``tidy``.
- ``process``: load one inbox file and settle it; ``load``: the load itself (read, map, merge, one transaction).
- ``quarantine``: a load's bad rows; ``replay``: row and file dead letters back through the current contract.
"""
