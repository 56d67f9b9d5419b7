"""GDPR erasure of one record's personal data across every store: the warehouse tables (``tables``), the
queues (``queue``), the archived and rejected files (``files``, ``formats``), the alert log and other text
stores (``alert_log``), with one audit row per run (``audit``); ``erase`` runs the two phases.

``integration-assets privacy erase`` and the ``contact.privacyDeletion`` webhook (through the event drain)
run the same code; ``privacy.suppress`` keeps later loads, events and dead letters from bringing the data
back, and ``erasure.archive`` keeps erased records out of files archived later (docs/PRIVACY.md).
"""
