"""Load a HubSpot contacts export into Postgres with dlt, ``write_disposition="merge"`` on the record id.

Runs in its own interpreter (bench/.work/dlt-venv, pinned by bench/requirements-dlt.txt), never in the
project's virtualenv: dlt's dependencies would disturb the project's pinned ones.

Set up the way a dlt user who wants speed would: the file is read with pyarrow's streaming CSV reader
(16 MiB blocks, every column as a string so a bad value cannot fail the read), ids and dates are cast in
arrow (an unparseable date becomes NULL, as in the baseline), empty strings become NULL, and the arrow
batches go to dlt, which normalizes them into CSV files and loads those with COPY (its fastest Postgres
loader, ``loader_file_format="csv"``), uncompressed (``DATA_WRITER__DISABLE_COMPRESSION``). ``primary_key="record_id"`` with ``dedup_sort`` on the last
modified date makes the latest version of a record win inside one load.

dlt's merge (the default ``delete-insert`` strategy) then deletes every destination row whose key is in the
load and inserts the deduplicated staging rows: a replay rewrites every row, and an older version arriving
later does overwrite a newer one (there is no "only if newer" condition). No validation, no quarantine.

Prints one JSON object to stdout: run_s and dlt's own step timings (extract/normalize/load).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

# Before importing dlt: no anonymous usage telemetry from a benchmark (it would also add network waits).
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
# dlt gzips its intermediate load files by default; on this 2-core machine that alone took ~15 s of a 1M-row
# load (measured: 41 s -> 20 s without it). A user tuning for speed turns it off, so the benchmark does too.
os.environ.setdefault("DATA_WRITER__DISABLE_COMPRESSION", "true")

import dlt  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.csv as pacsv  # noqa: E402

# export header -> column name in Postgres (what dlt's snake_case naming would produce, made explicit)
COLUMNS = {
    "Record ID": "record_id",
    "First Name": "first_name",
    "Last Name": "last_name",
    "Email": "email",
    "Phone Number": "phone",
    "Contact owner": "contact_owner",
    "Primary Associated Company ID": "company_id",
    "Last Activity Date": "last_activity_at",
    "Lead Status": "lead_status",
    "Marketing contact status": "is_marketing_contact",
    "Create Date": "created_at",
    "Associated Company": "company_name",
    "Lifecycle Stage": "lifecycle_stage",
    "Country/Region": "country",
    "Last Modified Date": "last_modified_at",
}
TIMESTAMPS = {"last_activity_at", "created_at", "last_modified_at"}
INTEGERS = {"record_id", "company_id"}


def _batches(path: Path) -> Iterator[pa.Table]:
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=16 << 20),
        convert_options=pacsv.ConvertOptions(
            column_types={h: pa.string() for h in COLUMNS},
            strings_can_be_null=True,  # "" -> NULL, as the baseline's NULLIF
            quoted_strings_can_be_null=True,
        ),
    )
    utc = pa.timestamp("s", tz="UTC")
    for batch in reader:
        arrays = []
        for header, name in COLUMNS.items():
            col = batch.column(header)
            if name in TIMESTAMPS:
                col = pc.strptime(col, format="%Y-%m-%d %H:%M", unit="s", error_is_null=True).cast(utc)
            elif name in INTEGERS:
                ok = pc.match_substring_regex(col, r"^[0-9]{1,18}$")
                col = pc.if_else(ok, col, pa.scalar(None, pa.string())).cast(pa.int64())
            elif name == "is_marketing_contact":
                col = pc.if_else(
                    pc.equal(col, "Marketing contact"),
                    True,
                    pc.if_else(pc.equal(col, "Non-marketing contact"), False, pa.scalar(None, pa.bool_())),
                )
            arrays.append(col)
        table = pa.Table.from_arrays(arrays, names=list(COLUMNS.values()))
        # like the baseline, a row without a usable Record ID is dropped (the generator writes none)
        yield table.filter(pc.is_valid(table.column("record_id")))


def _with_password(dsn: str) -> str:
    """dlt's PostgresCredentials insist on a password; with trust auth any placeholder is accepted."""
    parts = urlsplit(dsn)
    if parts.password is not None or "@" not in parts.netloc:
        return dsn
    user, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{user}:unused@{host}"))


def run(dsn: str, path: Path, pipelines_dir: Path, pipeline_name: str, dataset: str) -> dict[str, object]:
    @dlt.resource(
        name="contacts",
        write_disposition="merge",
        primary_key="record_id",
        columns={"last_modified_at": {"dedup_sort": "desc"}},
    )
    def contacts() -> Iterator[pa.Table]:
        yield from _batches(path)

    pipeline = dlt.pipeline(
        pipeline_name=pipeline_name,
        pipelines_dir=str(pipelines_dir),
        destination=dlt.destinations.postgres(credentials=_with_password(dsn)),
        dataset_name=dataset,
    )
    t0 = time.perf_counter()
    info = pipeline.run(contacts(), loader_file_format="csv")
    run_s = time.perf_counter() - t0
    info.raise_on_failed_jobs()
    steps = {}
    trace = pipeline.last_trace
    for step in trace.steps if trace else []:
        if step.finished_at and step.started_at:
            steps[f"{step.step}_s"] = round((step.finished_at - step.started_at).total_seconds(), 3)
    return {
        "run_s": round(run_s, 3),
        **steps,
        "load_id": info.loads_ids[-1] if info.loads_ids else None,
        "dlt_version": dlt.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dsn", required=True, help="postgresql://user@host:port/db")
    ap.add_argument("--file", type=Path, required=True)
    ap.add_argument(
        "--pipelines-dir", type=Path, required=True, help="dlt's local state (keep it across replays)"
    )
    ap.add_argument("--pipeline-name", default="bench_contacts")
    ap.add_argument("--dataset", default="bench_dlt", help="Postgres schema dlt loads into")
    args = ap.parse_args(argv)
    result = run(args.dsn, args.file, args.pipelines_dir, args.pipeline_name, args.dataset)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
