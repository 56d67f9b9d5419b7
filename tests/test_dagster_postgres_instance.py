"""The production instance layout: Dagster's own storage on PostgreSQL (docs/dagster.postgres.yaml) runs our jobs."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from tests.conftest import PG_ADMIN_URL, service_required

ROOT = Path(__file__).parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "hubspot" / "contacts_small.csv"


@pytest.mark.postgres
@pytest.mark.parametrize("warehouse_url", ["postgres"], indirect=True)
def test_ingest_job_runs_on_postgres_backed_dagster_instance(
    warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service_required("PostgreSQL", "127.0.0.1", 5432)
    name = f"ia_dagster_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        config = yaml.safe_load((ROOT / "docs" / "dagster.postgres.yaml").read_text())
        for key, value in {
            "DAGSTER_PG_USERNAME": "postgres",
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_DB": name,
            "DAGSTER_PG_PORT": "5432",
        }.items():
            monkeypatch.setenv(key, value)
        assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
        from integration_assets.definitions import defs
        from integration_assets.settings import get_settings

        inbox = get_settings().inbox_dir / "hubspot" / "contacts"
        inbox.mkdir(parents=True)
        shutil.copy(FIXTURE, inbox / "contacts.csv")
        with dg.instance_for_test(overrides={"storage": config["storage"]}) as instance:
            job = defs.resolve_job_def("ingest_hubspot_contacts")
            result = job.execute_in_process(instance=instance)
            assert result.success
            records = instance.get_run_records()
            assert records and records[0].dagster_run.status == dg.DagsterRunStatus.SUCCESS
            assert (
                instance.get_latest_materialization_event(dg.AssetKey(["warehouse", "contacts"])) is not None
            )
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
