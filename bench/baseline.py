"""The plain staged load: what a competent engineer writes by hand to merge a HubSpot contacts export.

One transaction:
1. ``COPY … FROM STDIN (FORMAT csv, HEADER true)`` of the raw file, streamed in 1 MiB blocks, into a
   TEMP table of 15 text columns (temp tables skip the WAL);
2. one ``INSERT INTO contacts_baseline (…typed columns…) SELECT DISTINCT ON (record_id) … casts …
   ORDER BY record_id, last_modified_at DESC NULLS LAST ON CONFLICT (record_id) DO UPDATE SET … WHERE``
   the stored row is older, or has the same timestamp and different content. So the latest version of
   each record wins within the file and across files, an older version never overwrites a newer one,
   and a replay of the same content rewrites no row.

What it does NOT do (the pipeline does): no validation and no quarantine. It casts what it can and
keeps the rest: an unparseable date (anything not ``YYYY-MM-DD HH:MM``) becomes NULL, an invalid email
or an unknown Lifecycle Stage is stored as is, an empty string becomes NULL, a row whose Record ID is
not an integer is silently dropped (the generator writes none). Nothing records what was wrong, there
is no loads ledger, no per-file accounting (read = loaded + duplicates + quarantined), no drift check
on the header beyond COPY failing when the column count differs, and a date that matches the pattern
but does not exist (``2024-02-31 10:00``) would abort the whole load.

Prints one JSON object to stdout: copy_s, upsert_s (INSERT + COMMIT), rows_copied, rows_written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import psycopg

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    record_id            bigint PRIMARY KEY,
    first_name           text,
    last_name            text,
    email                text,
    phone                text,
    contact_owner        text,
    company_id           bigint,
    last_activity_at     timestamptz,
    lead_status          text,
    is_marketing_contact boolean,
    created_at           timestamptz,
    company_name         text,
    lifecycle_stage      text,
    country              text,
    last_modified_at     timestamptz,
    load_id              text NOT NULL  -- which run last wrote the row (the bench counts rewrites by it)
)
"""

STAGE_DDL = """
CREATE TEMP TABLE stage_contacts (
    "Record ID" text, "First Name" text, "Last Name" text, "Email" text, "Phone Number" text,
    "Contact owner" text, "Primary Associated Company ID" text, "Last Activity Date" text,
    "Lead Status" text, "Marketing contact status" text, "Create Date" text, "Associated Company" text,
    "Lifecycle Stage" text, "Country/Region" text, "Last Modified Date" text
) ON COMMIT DROP
"""

# Cast a 'YYYY-MM-DD HH:MM' (UTC) string, NULL for anything else (the session time zone is UTC). Guards are
# LIKE + an unbounded character-class regex: measured here, a bounded regex such as '^\d{4}-\d{2}…$' costs
# ~1.5 s per column per million rows, ltrim(x, '0123…') ~0.6 s, this form ~0.5 s (LIKE alone ~0.1 s, but it
# lets '2024-ab-01 10:00' through to a cast that would abort the load).
TS = """CASE WHEN {c} LIKE '____-__-__ __:__' AND {c} ~ '^[0-9 :-]+$' THEN {c}::timestamptz END"""
BIGINT = "CASE WHEN length({c}) BETWEEN 1 AND 18 AND {c} ~ '^[0-9]+$' THEN {c}::bigint END"
TEXT = "NULLIF({c}, '')"

# target column -> SQL expression over the stage table
COLUMNS: dict[str, str] = {
    "record_id": '"Record ID"::bigint',
    "first_name": TEXT.format(c='"First Name"'),
    "last_name": TEXT.format(c='"Last Name"'),
    "email": TEXT.format(c='"Email"'),
    "phone": TEXT.format(c='"Phone Number"'),
    "contact_owner": TEXT.format(c='"Contact owner"'),
    "company_id": BIGINT.format(c='"Primary Associated Company ID"'),
    "last_activity_at": TS.format(c='"Last Activity Date"'),
    "lead_status": TEXT.format(c='"Lead Status"'),
    "is_marketing_contact": """CASE "Marketing contact status" WHEN 'Marketing contact' THEN true
                                   WHEN 'Non-marketing contact' THEN false END""",
    "created_at": TS.format(c='"Create Date"'),
    "company_name": TEXT.format(c='"Associated Company"'),
    "lifecycle_stage": TEXT.format(c='"Lifecycle Stage"'),
    "country": TEXT.format(c='"Country/Region"'),
    "last_modified_at": TS.format(c='"Last Modified Date"'),
}


def upsert_sql(table: str) -> str:
    cols = list(COLUMNS)
    content = [c for c in cols if c not in ("record_id", "last_modified_at")]
    select = ",\n           ".join(f"{expr} AS {name}" for name, expr in COLUMNS.items())
    return f"""
INSERT INTO {table} AS t ({", ".join(cols)}, load_id)
SELECT DISTINCT ON (record_id) *, %(load_id)s
FROM (
    SELECT {select}
    FROM stage_contacts
    WHERE length("Record ID") BETWEEN 1 AND 18 AND "Record ID" ~ '^[0-9]+$'
) s
ORDER BY record_id, last_modified_at DESC NULLS LAST
ON CONFLICT (record_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "record_id")}, load_id = EXCLUDED.load_id
WHERE t.last_modified_at < EXCLUDED.last_modified_at
   OR (t.last_modified_at IS NULL AND EXCLUDED.last_modified_at IS NOT NULL)
   OR (t.last_modified_at IS NOT DISTINCT FROM EXCLUDED.last_modified_at
       AND ({", ".join(f"t.{c}" for c in content)}) IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in content)}))
"""


def load(dsn: str, path: Path, table: str, load_id: str, work_mem: str = "") -> dict[str, float | int]:
    """COPY the raw file into a temp table and merge it into ``table``, in one transaction."""
    with psycopg.connect(dsn) as conn:  # commits on clean exit
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute("SET LOCAL TimeZone = 'UTC'")
            if work_mem:
                cur.execute("SELECT set_config('work_mem', %s, true)", (work_mem,))
            cur.execute(TABLE_DDL.format(table=table))
            cur.execute(STAGE_DDL)
            with cur.copy(
                "COPY stage_contacts FROM STDIN (FORMAT csv, HEADER true, ENCODING 'UTF8')"
            ) as copy:
                with open(path, "rb") as f:
                    while block := f.read(1 << 20):
                        copy.write(block)
            rows_copied = cur.rowcount
            t1 = time.perf_counter()
            cur.execute(upsert_sql(table), {"load_id": load_id})
            rows_written = cur.rowcount
        conn.commit()
        t2 = time.perf_counter()
    return {
        "copy_s": round(t1 - t0, 3),
        "upsert_s": round(t2 - t1, 3),
        "load_s": round(t2 - t0, 3),
        "rows_copied": rows_copied,
        "rows_written": rows_written,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dsn", required=True, help="libpq URL, e.g. postgresql://postgres@127.0.0.1:5432/db")
    ap.add_argument("--file", type=Path, required=True)
    ap.add_argument("--table", default="contacts_baseline")
    ap.add_argument("--load-id", required=True, help="marker stored on every row this run writes")
    ap.add_argument(
        "--work-mem",
        default="256MB",
        help="work_mem for the transaction, so DISTINCT ON sorts 1M rows in memory ('' = server default)",
    )
    args = ap.parse_args(argv)
    result = load(args.dsn, args.file, args.table, args.load_id, args.work_mem)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
