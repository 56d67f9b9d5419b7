"""RELIABILITY #26, file-grows-during-load: rows are appended to an export after its load picked it up,
while the load merges. What is archived is exactly what was loaded (checked by hash), the changed file
stays in the inbox, and the next load takes it as a new version: no appended row is lost, none loaded
twice. On SQLite and Postgres."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from integration_assets.ingest import inbox
from integration_assets.ingest.process import process
from integration_assets.settings import get_settings
from integration_assets.warehouse import writer
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import loads
from tests.faults.accounting import Figures, account_rows, backend_of
from tests.faults.files import HUBSPOT_CONTACT_COLUMNS, contact_row, inbox_folder, write_contacts

N, APPENDED = 3000, 12


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_growing_during_load(
    warehouse_url: str, isolated_env: Path, monkeypatch: pytest.MonkeyPatch, record: Callable[..., Figures]
) -> None:
    path = inbox_folder(isolated_env) / "contacts.csv"
    ids = write_contacts(path, [contact_row(300_000 + i) for i in range(N)])
    picked_up = path.read_bytes()
    extra = [contact_row(400_000 + i) for i in range(APPENDED)]
    merge = writer.CanonicalStage.merge
    appended: list[str] = []

    def merge_while_the_file_grows(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not appended:  # the exporter appends its last rows while our merge runs
            with path.open("a", encoding="utf-8", newline="") as fh:
                for row in extra:
                    fh.write(",".join(f'"{row[c]}"' for c in HUBSPOT_CONTACT_COLUMNS) + "\n")
                    appended.append(row["Record ID"])
        return merge(self, *args, **kwargs)

    monkeypatch.setattr(writer.CanonicalStage, "merge", merge_while_the_file_grows)
    settings = get_settings()
    engine = get_engine(warehouse_url)
    [f] = inbox.scan(settings)
    first = process(f, settings=settings, engine=engine)
    assert first.status == "succeeded", first.as_dict()
    assert appended, "the load never merged"
    archived = list(settings.archive_dir.rglob("*.csv"))
    assert [p.read_bytes() for p in archived] == [picked_up], "the archive must hold exactly the bytes loaded"
    assert first.content_hash == hashlib.sha256(picked_up).hexdigest()
    assert path.exists() and path.read_bytes() != picked_up, "the grown file must stay in the inbox"
    monkeypatch.setattr(writer.CanonicalStage, "merge", merge)
    [g] = inbox.scan(settings)
    second = process(g, settings=settings, engine=engine)
    assert second.status == "succeeded", second.as_dict()
    assert not path.exists()
    with engine.connect() as conn:
        hashes = sorted(
            r[0] for r in conn.execute(sa.select(loads.c.content_hash).where(loads.c.status == "succeeded"))
        )
    assert len(set(hashes)) == 2
    fig = account_rows(
        engine,
        "file growing during its load",
        table="contacts",
        source_system="hubspot",
        entity="contacts",
        sent_ids=ids + appended,
        backend=backend_of(warehouse_url),
    )
    fig.notes.append(
        f"{len(appended)} rows appended during the merge; loads: {first.rows_inserted} + {second.rows_inserted} inserted"
    )
    record(fig, applied=N + APPENDED, dead_lettered=0)
