"""The story issue 4 promises, end to end on the real code location:

a file arrives with a new dropdown value → its rows are quarantined and an alert goes out → a user adds the
value to the contract → ``dlq replay`` → the rows load, the check passes, the alert resolves.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from integration_assets.contracts.spec import CONTRACTS_DIR
from integration_assets.settings import get_settings
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import contacts, dead_letters
from tests.checks.support import check_key, drop, ingest, run_checks

HEADER = (
    '"Record ID","First Name","Last Name","Email","Phone Number","Contact owner","Primary Associated Company ID",'
    '"Last Activity Date","Lead Status","Marketing contact status","Create Date","Associated Company",'
    '"Lifecycle Stage","Country/Region","Last Modified Date"'
)


def _export(path: Path) -> Path:
    rows = [HEADER]
    for i in range(1, 11):
        stage = "Partner" if i in (4, 8) else "Lead"  # "Partner": a lifecycle stage the portal just added
        rows.append(
            f'"{i}","N{i}","L{i}","p{i}@example.com","","Sam","","","New","Marketing contact",'
            f'"2024-01-0{1 + i % 9} 10:00","","{stage}","Spain","2024-02-01 10:00"'
        )
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _alerts() -> list[dict]:
    path = get_settings().data_dir / "alerts.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None) -> str | None:
    sensor = defs.resolve_sensor_def("asset_check_alerts")
    return sensor(dg.build_sensor_context(instance=instance, cursor=cursor)).cursor


def test_new_dropdown_value_alert_contract_edit_replay_resolve(
    warehouse_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integration_assets.cli import main
    from integration_assets.definitions import defs

    contracts_root = tmp_path / "contracts"
    shutil.copytree(CONTRACTS_DIR, contracts_root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setenv("INTEGRATION_CONTRACTS_DIR", str(contracts_root))
    drift = check_key("contacts", "drift")

    with dg.instance_for_test() as instance:
        # 1. The file arrives: 8 rows load, the 2 "Partner" rows are quarantined, drift is reported.
        run = ingest(defs, instance, [drop("export.csv", _export(tmp_path / "export.csv"))])
        assert run.success
        evals = {e.check_name: e for e in run.get_asset_check_evaluations()}
        assert not evals["drift"].passed
        engine = get_engine(warehouse_url)
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(contacts)).scalar_one() == 8
            pending = conn.execute(
                sa.select(dead_letters.c.natural_key, dead_letters.c.check_name).where(
                    dead_letters.c.status == "pending"
                )
            ).all()
        assert sorted(pending) == [("4", "unknown_value"), ("8", "unknown_value")]

        # 2. The alert goes out, once.
        cursor = _tick(defs, instance, None)
        fired = [a for a in _alerts() if a["key"] == "check:warehouse/contacts:drift"]
        assert [a["kind"] for a in fired] == ["fire"]
        assert "p4@example.com" not in json.dumps(fired)  # ids and counts, never raw PII

        # 3. A user teaches the contract the new value (a contract edit, no code change) ...
        yaml_path = contracts_root / "hubspot" / "contacts_export.v1.yaml"
        text = yaml_path.read_text()
        yaml_path.write_text(
            text.replace("      Other: other\n", "      Other: other\n      Partner: other\n", 1)
        )

        # 4. ... and replays the quarantined rows from the CLI (a replay_dead_letters run).
        res = CliRunner().invoke(
            main, ["dlq", "replay", "--filter", "--source", "hubspot", "--check", "unknown_value", "--json"]
        )
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["replayed"] == 2
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(contacts)).scalar_one() == 10
            assert (
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(dead_letters)
                    .where(dead_letters.c.status == "pending")
                ).scalar_one()
                == 0
            )

        # 5. The check passes again and the alert resolves.
        assert run_checks(defs, instance, [drift]).get_asset_check_evaluations()[0].passed
        _tick(defs, instance, cursor)
    kinds = [a["kind"] for a in _alerts() if a["key"] == "check:warehouse/contacts:drift"]
    assert kinds == ["fire", "resolve"]
