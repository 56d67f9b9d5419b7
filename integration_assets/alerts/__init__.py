"""Alerts: incidents raised and resolved by the Dagster sensors, delivered to the configured channels.

Plain Python (no Dagster import). The sensors build ``notifier.Notifier.from_env()`` and then call
``fire(Alert(...))`` while a condition fails and ``resolve(key, summary)`` once it passes (see ``notifier``).
``incidents`` keeps the incident rows, ``delivery`` retries one channel, ``notification`` is what a channel
receives, ``channels`` and ``mail`` are the channels.
"""
