"""Keystone test: the code location loads, and its assets, checks, jobs, sensors and schedules match the snapshot.

Regenerate after an intended change with ``UPDATE_SNAPSHOTS=1 pytest tests/test_definitions.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def _describe(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(d.to_user_string() for d in node.parent_keys),
            "kinds": sorted(node.kinds),
            "owners": sorted(node.owners),
            "has_description": bool(node.description),
            "freshness": node.freshness_policy is not None if hasattr(node, "freshness_policy") else None,
        }
    checks = sorted(k.to_user_string() for k in graph.asset_check_keys)
    return {
        "assets": assets,
        "checks": checks,
        "jobs": sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")),
        "sensors": sorted(s.name for s in defs.sensors or []),
        "schedules": sorted(s.name for s in defs.schedules or []),
    }


def test_code_location_loads_and_matches_snapshot() -> None:
    from integration_assets.definitions import defs

    defs.validate_loadable(defs)
    current = _describe(defs)
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert SNAPSHOT.exists(), f"{SNAPSHOT} is missing: create it with UPDATE_SNAPSHOTS=1 and commit it"
    assert current == json.loads(SNAPSHOT.read_text()), "definitions changed: review and UPDATE_SNAPSHOTS=1"


def test_every_asset_is_documented_and_owned() -> None:
    from integration_assets.definitions import defs

    described = _describe(defs)
    for key, a in described["assets"].items():
        assert a["has_description"], key
        assert a["owners"], key
        assert a["group"] in {
            "hubspot",
            "odoo",
            "stripe",
            "easypost",
            "observability",
            "outbound",
            "api_hubspot",  # the partitioned API pulls (assets/pull.py)
            "api_odoo",
            "api_stripe",
        }, (
            key,
            a["group"],
        )
