"""Idempotent, set-based loads into canonical tables.

The reasoning: docs/DESIGN.md, "The canonical merge (warehouse/writer.py)".
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from psycopg import sql as psql

from integration_assets.warehouse import outbox
from integration_assets.warehouse.schema import (
    CANONICAL_TABLES,
    LATE_COLUMNS,
    LINEAGE_COLUMNS,
)

STAGE_POS = "_pos"
STAGE_KEEP = "_keep"  # bit mask (bit i = column i of the table) of the columns a staged row leaves as stored
CONSTANT_LINEAGE = ("source_system", "mapping_version", "load_id")


@dataclass(frozen=True)
class MergeCounts:
    staged: int
    inserted: int
    updated: int
    unchanged: int  # incl. stale versions older than what the warehouse has
    duplicates: int  # superseded or identical copies of a key inside the same load


def _q(conn: sa.Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


class CanonicalStage:
    """A temporary staging table for one canonical table, inside the caller's transaction."""

    def __init__(self, conn: sa.Connection, table_name: str) -> None:
        if table_name not in CANONICAL_TABLES:  # identifiers only from the allow-list
            raise ValueError(f"unknown canonical table {table_name!r}")
        self.conn = conn
        self.table = CANONICAL_TABLES[table_name]
        self.columns = [c.name for c in self.table.columns]
        # What the row hash covers: everything but lineage bookkeeping and the late columns (see schema).
        self.business = [c for c in self.columns if c not in LINEAGE_COLUMNS | LATE_COLUMNS]
        self.pg = conn.dialect.name == "postgresql"
        self.name = f"_stage_{table_name}"
        self.staged = 0
        self._defaults: dict[str, str] = {}
        # Columns a partial row may keep: any stored column but the key, the version and lineage bookkeeping.
        self.keepable = [
            c for c in self.columns if c not in LINEAGE_COLUMNS | {"source_id", "source_updated_at"}
        ]
        self._bit = {c: 1 << i for i, c in enumerate(self.columns) if c in self.keepable}
        if (
            max(self._bit.values(), default=0) >= 1 << 62
        ):  # pragma: no cover - no canonical table is that wide
            raise ValueError(f"{table_name} has too many columns for the keep mask")
        self.kept_mask = 0  # union of the masks staged so far (0: every row is whole)
        self._keep_default = 0
        self._keep_column = False
        q = _q(conn, self.name)
        if self.pg:
            # Timestamps are staged as naive UTC text (formatting them with a zone costs ~25x more in Arrow),
            # and the row hash is computed from text forms: both need the session zone to be UTC.
            conn.exec_driver_sql("SET LOCAL TimeZone = 'UTC'")
            conn.exec_driver_sql(f"CREATE TEMP TABLE {q} (LIKE {_q(conn, table_name)}) ON COMMIT DROP")
            conn.exec_driver_sql(f"ALTER TABLE {q} ADD COLUMN {STAGE_POS} bigint")
            conn.exec_driver_sql(f"ALTER TABLE {q} ALTER COLUMN row_hash DROP NOT NULL")  # computed at merge
        else:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{q}")
            conn.exec_driver_sql(f"CREATE TEMP TABLE {q} AS SELECT * FROM {_q(conn, table_name)} WHERE 0")
            conn.exec_driver_sql(f"ALTER TABLE {q} ADD COLUMN {STAGE_POS} INTEGER")

    def _driver(self) -> Any:
        """The DBAPI connection under SQLAlchemy's (psycopg for COPY, sqlite3 for executemany)."""
        raw = self.conn.connection.driver_connection
        if raw is None:  # pragma: no cover - only for a closed connection
            raise RuntimeError("the staging connection is closed")
        return raw

    def add(self, frame: pd.DataFrame, load_id: str, keep: Iterable[str] = ()) -> None:
        """Stage mapped rows (canonical columns + lineage + _pos); the row hash is computed here.

        ``keep``: columns the rows do not carry (their source column is absent from the file), left as stored
        for keys that exist; their values in ``frame`` are ignored (null for a key that is inserted)."""
        if frame.empty:
            return
        kept = sorted(set(keep))
        unknown = [c for c in kept if c not in self._bit]
        if unknown:
            raise ValueError(
                f"cannot keep {unknown} of {self.table.name}: not stored columns outside the key"
            )
        mask = sum(self._bit[c] for c in kept)
        self.kept_mask |= mask
        frame = frame.assign(load_id=load_id)
        if self.pg:
            if (
                mask != self._keep_default
            ):  # one value per chunk: the staging column's default, not a COPY field
                if (
                    mask and not self._keep_column
                ):  # added by the first partial chunk: whole loads never see it
                    self._driver().execute(
                        psql.SQL("ALTER TABLE {} ADD COLUMN {} bigint").format(
                            psql.Identifier(self.name), psql.Identifier(STAGE_KEEP)
                        )
                    )
                    self._keep_column = True
                self._driver().execute(
                    psql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                        psql.Identifier(self.name), psql.Identifier(STAGE_KEEP), psql.Literal(mask or None)
                    )
                )
                self._keep_default = mask
            # Postgres hashes the row itself during the merge (hashtextextended): far cheaper than in pandas.
            cols = [
                c for c in (*self.columns, STAGE_POS) if c != "row_hash" and not self._as_default(frame, c)
            ]
            self._copy(frame[cols], cols)
        else:
            if kept:
                frame = self._with_stored(frame, kept)
            frame["row_hash"] = (
                pd.util.hash_pandas_object(frame[self.business], index=False).to_numpy().view(np.int64)
            )
            cols = [*self.columns, STAGE_POS]
            self._executemany(frame[cols], cols)
        self.staged += len(frame)

    def _with_stored(self, frame: pd.DataFrame, kept: list[str]) -> pd.DataFrame:
        """SQLite: ``frame`` with the stored values of the ``kept`` columns for keys that exist (null for new ones).

        The load holds SQLite's write lock from its first statement, so the values read here are the ones the
        merge meets. They get the frame's dtypes, so the row hash of a merged row equals that of a whole row
        with the same content."""
        c = self.conn
        sql = (
            f"SELECT source_id, {', '.join(_q(c, x) for x in kept)} FROM {_q(c, self.table.name)} "
            "WHERE source_system = ? AND source_id IN (SELECT value FROM json_each(?))"
        )
        found = {col: np.full(len(frame), None, dtype=object) for col in kept}
        ids = frame["source_id"].to_numpy(dtype=object, na_value=None)
        for system, rows_of in frame.groupby("source_system", sort=False).indices.items():
            keys = ids[rows_of]
            wanted = pd.unique(keys[pd.notna(keys)]).tolist()
            stored = self._driver().execute(sql, (system, json.dumps(wanted))).fetchall()
            if not stored:
                continue
            columns = list(zip(*stored, strict=True))
            at = pd.Index(columns[0]).get_indexer(keys)  # the stored row of each frame row, -1 for a new key
            hit = at >= 0
            for col, values in zip(kept, columns[1:], strict=True):
                found[col][rows_of[hit]] = np.asarray(values, dtype=object)[at[hit]]
        frame = frame.copy()
        for col in kept:
            dtype = frame[col].dtype
            values = pd.Series(found[col], index=frame.index, dtype=object)
            if isinstance(dtype, pd.DatetimeTZDtype):
                frame[col] = pd.to_datetime(values, utc=True, format="ISO8601").astype(dtype)
            else:
                frame[col] = values.astype(dtype)
        return frame

    def _as_default(self, frame: pd.DataFrame, col: str) -> bool:
        """Stage a lineage column that holds one text value in ``frame`` as the staging column's default.

        A load, a contract and a system are one value per chunk: sent once instead of on every row, they
        take a quarter off the COPY stream of a contacts export. A column sent per row overrides the default."""
        if col not in CONSTANT_LINEAGE:
            return False
        values = frame[col]
        first = values.iloc[0]
        if not isinstance(first, str):
            return False
        if values.dtype == object:  # how the mapper and add() set them: compared in numpy (6x cheaper)
            if not bool((values.to_numpy() == first).all()):  # a None or NaN is not equal either
                return False
        # notna: pandas' all() skips missing values, and a null must stay null, not become the default.
        elif not bool(values.notna().all() and (values == first).all()):
            return False
        if self._defaults.get(col) != first:
            self._driver().execute(
                psql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                    psql.Identifier(self.name), psql.Identifier(col), psql.Literal(first)
                )
            )
            self._defaults[col] = first
        return True

    def _copy(self, frame: pd.DataFrame, cols: list[str]) -> None:
        frame = frame.copy(deep=False)
        for c in cols:
            if isinstance(frame[c].dtype, pd.DatetimeTZDtype):
                # Postgres keeps microseconds; naive UTC (the session zone is UTC, see __init__).
                frame[c] = frame[c].dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
        table = pa.Table.from_pandas(frame, preserve_index=False)
        buf = io.BytesIO()
        pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
        raw = self._driver()
        collist = ", ".join(_q(self.conn, c) for c in cols)
        with (
            raw.cursor() as cur,
            cur.copy(f"COPY {_q(self.conn, self.name)} ({collist}) FROM STDIN (FORMAT csv)") as cp,
        ):
            view = buf.getbuffer()
            for start in range(0, len(view), 1 << 20):
                cp.write(view[start : start + (1 << 20)])

    def _executemany(self, frame: pd.DataFrame, cols: list[str]) -> None:
        data: dict[str, Any] = {}
        for c in cols:
            s = frame[c]
            if isinstance(s.dtype, pd.DatetimeTZDtype):
                # SQLAlchemy's SQLite DateTime format, so ORM reads and string comparisons agree.
                txt = s.dt.tz_convert("UTC").dt.strftime("%Y-%m-%d %H:%M:%S.%f")
                data[c] = txt.astype(object).where(s.notna(), None)
            elif str(s.dtype) == "boolean":
                data[c] = s.astype(object).where(s.notna(), None).map(lambda v: None if v is None else int(v))
            else:
                data[c] = s.astype(object).where(s.notna(), None)
        rows = list(zip(*(data[c].tolist() for c in cols), strict=True))
        marks = ", ".join("?" for _ in cols)
        collist = ", ".join(_q(self.conn, c) for c in cols)
        self._driver().executemany(
            f"INSERT INTO {_q(self.conn, self.name)} ({collist}) VALUES ({marks})", rows
        )

    def _analyze_if_grown(self, written: int) -> None:
        """ANALYZE the canonical table after a large merge (Postgres; autovacuum would, a minute later).

        Inside the load's transaction: its own new rows are sampled as live."""
        if written < ANALYZE_MIN_ROWS:
            return
        c = self.conn
        known = c.execute(
            sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)"), {"t": self.table.name}
        ).scalar()
        if known is None or known < 0 or written > ANALYZE_SHARE * known:  # -1: never analysed
            c.exec_driver_sql(f"ANALYZE {_q(c, self.table.name)}")

    def _merged_sql(self, t: str, col: str) -> str:
        """Postgres: the value of ``col`` in the merged row (stored when the staged row keeps it)."""
        q = _q(self.conn, col)
        bit = self._bit.get(col, 0)
        if not bit & self.kept_mask:
            return f"src.{q}"
        return f"CASE WHEN src.{STAGE_KEEP} & {bit} <> 0 THEN {t}.{q} ELSE src.{q} END"

    def merge(self, *, lock: bool = True, tie_wins: bool = False) -> MergeCounts:
        """Merge the staged rows into the canonical table; returns what changed.

        A staged row replaces a stored one with an older ``source_updated_at``, never one with a newer. At an
        equal ``source_updated_at`` (the same source version) it replaces it when its row hash is greater, so
        loads in any order end with the same row; with ``tie_wins``, whenever the business values differ (a
        forced re-load under a corrected contract: the newer load wins a tie; unchanged rows stay unchanged).

        Then, in the same transaction, the outbox rows the merged rows cause (``warehouse.outbox.capture``:
        a query only for the tables that trigger an outbound write).

        ``lock=False`` only when every staged key already exists and is locked by the caller (``SELECT …
        FOR UPDATE``): then nothing can be inserted, and no other merge can insert the same key.

        Loads, events and replays call ``privacy.suppress.merge_keeping_erased`` instead, which keeps the
        staged rows of erased records erased first (this layer knows no privacy rules)."""
        if self.staged == 0:
            return MergeCounts(0, 0, 0, 0, 0)
        before = outbox.before_merge(self.conn, self.table.name, self.name)
        counts = self._merge(lock, tie_wins)
        outbox.capture(self.conn, self.table.name, self.name, before)
        return counts

    def _merge(self, lock: bool, tie_wins: bool) -> MergeCounts:
        c = self.conn
        t, s = _q(c, self.table.name), _q(c, self.name)
        cols = ", ".join(_q(c, x) for x in self.columns)
        keys = ("source_system", "source_id")
        sets = ", ".join(f"{_q(c, x)} = excluded.{_q(c, x)}" for x in self.columns if x not in keys)
        tie = "<>" if tie_wins else ">"  # at an equal source_updated_at: any other content, or a greater hash
        newer = (
            f"excluded.source_updated_at > {t}.source_updated_at OR "
            f"(excluded.source_updated_at = {t}.source_updated_at AND excluded.row_hash {tie} {t}.row_hash)"
        )
        if self.pg:
            # The in-file dedup sorts the staged rows: give it memory so it does not spill to disk.
            c.exec_driver_sql("SET LOCAL work_mem = '256MB'")
            if lock:
                # One merge per canonical table at a time (an advisory lock held to the end of the
                # transaction). It makes a plain INSERT of the keys that are not there yet safe, which writes
                # ~40% less than INSERT … ON CONFLICT (that path logs a speculative insertion per row). Not a
                # table lock: readers and plain row updates (HubSpot property changes) are not held up.
                c.execute(
                    sa.text(
                        "SELECT pg_advisory_xact_lock(hashtext('integration_assets.merge'), hashtext(:t))"
                    ),
                    {"t": self.table.name},
                )
            # concat_ws of the text forms (NULL kept distinct from every value) is ~2x cheaper than ROW(...)::text.
            biz = ", ".join(f"coalesce(s.{_q(c, x)}::text, chr(30))" for x in self.business)
            others = ", ".join(f"s.{_q(c, x)}" for x in self.columns if x != "row_hash")

            def newest(extra: str = "") -> str:
                return f"""
                SELECT DISTINCT ON (source_id, source_system) {cols}{extra} FROM (
                    SELECT {others}{extra}, hashtextextended(concat_ws(chr(31), {biz}), 0) AS row_hash FROM {s} s
                ) h
                -- source_id first: Postgres abbreviates only the first sort key, and source_system is constant.
                ORDER BY source_id, source_system, source_updated_at DESC, row_hash DESC"""

            if lock and c.exec_driver_sql(f"SELECT NOT EXISTS (SELECT 1 FROM {t})").scalar_one():
                # A first load into an empty table (no merge can add rows while the lock is held): every
                # newest version is inserted, with no join against the table and no second pass over them.
                # Nothing is stored, so a partial row has nothing to keep: its absent columns are null.
                inserted = c.exec_driver_sql(f"INSERT INTO {t} ({cols}) {newest()}").rowcount
                self._analyze_if_grown(inserted)
                return MergeCounts(self.staged, inserted, 0, 0, self.staged - inserted)
            c.exec_driver_sql(f"ANALYZE {s}")
            src_sets = ", ".join(f"{_q(c, x)} = src.{_q(c, x)}" for x in self.columns if x not in keys)
            src_newer = newer.replace("excluded.", "src.")
            src_cte = newest()
            if self.kept_mask:
                # Partial rows: an existing row is compared and written as the merged row (see the module doc).
                src_cte = newest(f", {STAGE_KEEP}")
                merged = {x: self._merged_sql(t, x) for x in self.columns}
                merged_hash = (
                    "hashtextextended(concat_ws(chr(31), "
                    + ", ".join(f"coalesce(({merged[x]})::text, chr(30))" for x in self.business)
                    + "), 0)"
                )
                src_sets = ", ".join(
                    f"{_q(c, x)} = {merged_hash if x == 'row_hash' else merged[x]}"
                    for x in self.columns
                    if x not in keys
                )
                src_newer = (
                    f"src.source_updated_at > {t}.source_updated_at OR (src.source_updated_at = "
                    f"{t}.source_updated_at AND {merged_hash} {tie} {t}.row_hash)"
                )
            same_key = "{a}.source_system = src.source_system AND {a}.source_id = src.source_id"
            # Every sub-statement sees the same snapshot: the UPDATE touches only keys that existed, the
            # INSERT only keys that did not, so the two never meet.
            sql = f"""
            WITH src AS MATERIALIZED ({src_cte}
            ), u AS (
                UPDATE {t} SET {src_sets} FROM src
                WHERE {same_key.format(a=t)} AND ({src_newer})
                RETURNING 1
            ), i AS (
                INSERT INTO {t} ({cols}) SELECT {cols} FROM src
                WHERE NOT EXISTS (SELECT 1 FROM {t} x WHERE {same_key.format(a="x")})
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM src), (SELECT count(*) FROM i), (SELECT count(*) FROM u)"""
            distinct, inserted, updated = c.exec_driver_sql(sql).one()
            self._analyze_if_grown(inserted + updated)
        else:
            distinct = c.exec_driver_sql(
                f"SELECT count(*) FROM (SELECT DISTINCT source_system, source_id FROM {s})"
            ).scalar_one()
            inserted = c.exec_driver_sql(
                f"SELECT count(*) FROM (SELECT DISTINCT source_system, source_id FROM {s}) x "
                f"WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {t}.source_system = x.source_system AND {t}.source_id = x.source_id)"
            ).scalar_one()
            res = c.exec_driver_sql(f"""
                INSERT INTO {t} ({cols})
                SELECT {cols} FROM (
                    SELECT *, ROW_NUMBER() OVER (PARTITION BY source_system, source_id
                                                 ORDER BY source_updated_at DESC, row_hash DESC) AS _rn
                    FROM {s}) WHERE _rn = 1
                ON CONFLICT (source_system, source_id) DO UPDATE SET {sets} WHERE {newer}""")
            updated = max(res.rowcount - inserted, 0)
        unchanged = distinct - inserted - updated
        return MergeCounts(self.staged, inserted, updated, unchanged, self.staged - distinct)


# A merge that rewrites more than this share of a table (and at least ANALYZE_MIN_ROWS) refreshes its
# statistics at once: a table never analysed looks empty to the planner, which then probes the primary key
# once per staged row in the next merge and spills the keys check's grouping to disk.
ANALYZE_SHARE, ANALYZE_MIN_ROWS = 0.1, 10_000


def existing_keys(conn: sa.Connection, table_name: str, system: str, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` exist in a canonical table (for referential checks)."""
    table = CANONICAL_TABLES[table_name]
    wanted = sorted({i for i in ids if i is not None})
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        rows = conn.execute(
            sa.select(table.c.source_id).where(table.c.source_system == system, table.c.source_id.in_(part))
        )
        found.update(r[0] for r in rows)
    return found
