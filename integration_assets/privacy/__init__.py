"""Privacy rules: whose data an erasure is about and where it lives (``subjects``), and how erased records
stay erased in later loads, events and dead letters (``suppress``). The erasure itself, across every store,
is ``integration_assets.erasure`` (docs/PRIVACY.md).
"""
