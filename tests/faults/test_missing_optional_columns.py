"""RELIABILITY #27, missing-optional-column: a newer HubSpot contacts export whose user left the Email
and Phone Number columns out (same ids, newer timestamps, a changed first name). The names update; the
stored e-mails and phones stay as they were (a file says nothing about a column it lacks). Every stored
value the newer file wiped counts as lost. Also with equal timestamps (the tie-break must not wipe
either)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from integration_assets.ingest.load import ingest_file
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import CANONICAL_TABLES
from tests.faults.accounting import Figures, account_rows, backend_of
from tests.faults.files import HUBSPOT_CONTACT_COLUMNS, contact_row, inbox_folder, write_contacts

N = 200
PARTIAL = [c for c in HUBSPOT_CONTACT_COLUMNS if c not in ("Email", "Phone Number")]


@pytest.mark.parametrize(
    "second_modified", ["2024-03-01 10:00", "2024-02-01 10:00"], ids=["newer", "same-time"]
)
def test_missing_optional_columns(
    warehouse_url: str, isolated_env: Path, second_modified: str, record: Callable[..., Figures]
) -> None:
    folder = inbox_folder(isolated_env)
    ids = write_contacts(folder / "full.csv", [contact_row(500 + i) for i in range(N)])
    assert ingest_file(folder / "full.csv", "hubspot", "contacts").status == "succeeded"
    rows = [contact_row(500 + i, second_modified, **{"First Name": f"New{i}"}) for i in range(N)]
    write_contacts(folder / "partial.csv", rows, columns=PARTIAL)
    report = ingest_file(folder / "partial.csv", "hubspot", "contacts")
    assert report.status == "succeeded", report.as_dict()
    engine = get_engine(warehouse_url)
    t = CANONICAL_TABLES["contacts"]
    with engine.connect() as conn:
        stored = {
            r.source_id: r
            for r in conn.execute(sa.select(t.c.source_id, t.c.email, t.c.phone, t.c.first_name))
        }
    erased = sum(
        (r.email != f"c{r.source_id}@example.com") + (r.phone != f"+1 555-{int(r.source_id) % 10000:04d}")
        for r in stored.values()
    )
    fig = account_rows(
        engine,
        f"missing optional columns ({'newer' if second_modified > '2024-02-01 10:00' else 'same time'})",
        table="contacts",
        source_system="hubspot",
        entity="contacts",
        sent_ids=ids,
        erased_values=erased,
        backend=backend_of(warehouse_url),
    )
    fig.notes.append(f"{erased} stored e-mail/phone values erased by the partial file")
    if second_modified > "2024-02-01 10:00":  # the newer file's own columns do apply
        assert all(r.first_name.startswith("New") for r in stored.values())
    record(fig, applied=N, dead_lettered=0)
