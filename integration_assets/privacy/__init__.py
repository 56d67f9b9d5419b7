"""GDPR erasure: a record's personal data erased from every store, and kept erased (docs/PRIVACY.md).

``erase`` (the CLI, ``integration-assets privacy erase``) and the ``contact.privacyDeletion`` webhook (through
the event drain) run the same code in ``privacy.erase``; ``privacy.suppress`` keeps later loads, events and
dead letters from bringing the data back.
"""
