"""``make bench``: our sync vs a plain staged load vs dlt, side by side, on one generated contacts export.

For each contender, on an empty database of its own: a first load, an identical replay (the same bytes
under a new name), and a replay of a copy where 5% of the records changed. Each load runs as a subprocess,
so its wall time and its peak RSS (``ru_maxrss`` from ``wait4`` on that one process) are its own. After each
replay the table is compared with a snapshot of (key, xmin) taken just before it: "rows written" is the
number of rows the replay physically inserted or rewrote, whatever the contender's own markers say.

    .venv/bin/python bench/run.py                      # 1,000,000 rows, every contender once
    .venv/bin/python bench/run.py --rows 20000         # smoke check
    .venv/bin/python bench/run.py --repeat 3 --only baseline,dlt

Prints a Markdown table (medians over --repeat) and the ratios, and writes every raw measurement to
``bench/.work/results-<timestamp>.json``. See docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"
PY = Path(sys.executable)  # the project's interpreter (make bench runs us with .venv/bin/python)
DLT_VENV = WORK / "dlt-venv"
DLT_REQUIREMENTS = BENCH / "requirements-dlt.txt"
SYNC_CMD = ROOT / ".venv" / "bin" / "integration-assets"
STEPS = ("first", "replay", "changed")
STEP_TITLES = {"first": "first load", "replay": "identical replay", "changed": "replay, 5% changed"}
CONTENDERS = ("ours", "baseline", "dlt")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------
# subprocesses, measured from the outside
# --------------------------------------------------------------------------------------------------------
@dataclass
class Measured:
    returncode: int
    wall_s: float
    peak_rss_mib: float
    stdout: str
    stderr_tail: str


_running: set[int] = set()  # process groups of children still running (killed on interrupt)

# A minimal launcher between the harness and each contender. On Linux a process's peak RSS starts at the
# high-water mark of the process it was forked from (exec carries it over), so a contender forked straight
# from this harness would report at least the harness's own RSS. Forked from a bare `python -I -S` instead,
# its floor is ~10 MiB, and the launcher reports the wait4() rusage of that one process.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_measured(cmd: list[str], env: dict[str, str], log_prefix: Path, timeout_s: float) -> Measured:
    """Run ``cmd``; return its wall time and its own peak RSS (ru_maxrss from wait4 on that process)."""
    out_path, err_path = log_prefix.with_suffix(".out"), log_prefix.with_suffix(".err")
    rss_path = log_prefix.with_suffix(".maxrss")
    rss_path.unlink(missing_ok=True)
    launcher = [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(rss_path), *cmd]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(launcher, stdout=out, stderr=err, env=env, cwd=ROOT, start_new_session=True)
        _running.add(proc.pid)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log(f"timeout after {timeout_s:.0f} s: {cmd[0]} ... (killing it)")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            _running.discard(proc.pid)
        wall = time.perf_counter() - t0
    err_text = err_path.read_text(errors="replace")
    try:
        rss_kib = float(rss_path.read_text())  # Linux reports KiB
    except (OSError, ValueError):
        rss_kib = float("nan")
    return Measured(
        returncode=proc.returncode,
        wall_s=round(wall, 3),
        peak_rss_mib=round(rss_kib / 1024, 1),
        stdout=out_path.read_text(errors="replace"),
        stderr_tail="\n".join(err_text.splitlines()[-25:]),
    )


def last_json_object(text: str) -> dict[str, Any] | None:
    """The JSON object a contender printed: the whole stdout, else its last line that parses as one."""
    with contextlib.suppress(ValueError):
        obj = json.loads(text)
        if isinstance(obj, dict):
            return obj
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    return obj
    return None


def error_summary(m: Measured) -> str:
    """One line saying why a load failed: a per-load error from its JSON, else the last exception line."""
    out = last_json_object(m.stdout) or {}
    for load in out.get("loads") or []:
        if isinstance(load, dict) and load.get("error"):
            return str(load["error"]).splitlines()[0][:200]
    lines = [x.strip() for x in m.stderr_tail.splitlines() if x.strip()]
    errors = [x for x in lines if "Error" in x or "Exception" in x]
    return (errors or lines or ["no output"])[-1][:200]


def clean_env() -> dict[str, str]:
    """The caller's environment minus anything that would point a contender at another warehouse/instance."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTEGRATION_", "DESTINATION__"))}
    env.pop("DAGSTER_HOME", None)  # the Makefile exports the demo's instance; each run gets a fresh one
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --------------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------------
def gen_version() -> int:
    """gen_contacts.GEN_VERSION, read from the source: importing numpy/pyarrow here would bloat the harness."""
    match = re.search(r"^GEN_VERSION = (\d+)", (BENCH / "gen_contacts.py").read_text(), re.MULTILINE)
    if not match:
        raise RuntimeError("GEN_VERSION not found in bench/gen_contacts.py")
    return int(match.group(1))


def cached(path: Path, expect: dict[str, Any]) -> bool:
    meta = Path(str(path) + ".meta.json")
    if not (path.exists() and meta.exists()):
        return False
    with contextlib.suppress(ValueError, OSError):
        m = json.loads(meta.read_text())
        return all(m.get(k) == v for k, v in expect.items()) and m.get("bytes") == path.stat().st_size
    return False


def ensure_inputs(
    rows: int, seed: int, change_rate: float
) -> tuple[Path, Path, dict[str, Any], dict[str, Any]]:
    """Generate (or reuse, keyed by generator version + seed + rows) the export and its 5%-changed copy."""
    v = gen_version()
    base = WORK / f"contacts-v{v}-s{seed}-n{rows}.csv"
    changed = WORK / f"contacts-v{v}-s{seed}-n{rows}-changed{change_rate:g}.csv"
    if not cached(base, {"gen_version": v, "seed": seed, "rows": rows}):
        log(f"generating {rows:,} rows (seed {seed}) -> {base.name}")
        subprocess.run(
            [
                str(PY),
                str(BENCH / "gen_contacts.py"),
                "--rows",
                str(rows),
                "--seed",
                str(seed),
                "--out",
                str(base),
            ],
            check=True,
        )
    if not cached(
        changed, {"gen_version": v, "seed": seed, "changed_from": base.name, "change_rate": change_rate}
    ):
        log(f"writing the {change_rate:.0%}-changed copy -> {changed.name}")
        subprocess.run(
            [str(PY), str(BENCH / "gen_contacts.py"), "--seed", str(seed), "--changed-from", str(base),
             "--change-rate", str(change_rate), "--out", str(changed)],
            check=True,
        )  # fmt: skip
    meta = json.loads(Path(str(base) + ".meta.json").read_text())
    meta_changed = json.loads(Path(str(changed) + ".meta.json").read_text())
    return base, changed, meta, meta_changed


def ensure_dlt_venv() -> Path:
    """bench/.work/dlt-venv with bench/requirements-dlt.txt, (re)built when the requirements change."""
    python = DLT_VENV / "bin" / "python"
    want = hashlib.sha256(DLT_REQUIREMENTS.read_bytes()).hexdigest()
    stamp = DLT_VENV / ".requirements.sha256"
    if python.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return python
    log(f"creating {DLT_VENV.relative_to(ROOT)} with {DLT_REQUIREMENTS.name} (once; takes a minute)")
    shutil.rmtree(DLT_VENV, ignore_errors=True)
    base_python = shutil.which("python3") or getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(DLT_VENV)], check=True)
    with open(WORK / "dlt-venv-install.log", "wb") as out:
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(DLT_REQUIREMENTS)],
            check=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    stamp.write_text(want + "\n")
    return python


def sync_available() -> tuple[bool, str]:
    """Is ``integration-assets sync --json`` there? (It is being built; until then the contender is skipped.)"""
    if not SYNC_CMD.exists():
        return False, f"{SYNC_CMD} not found (run `make install`)"
    proc = subprocess.run(
        [str(SYNC_CMD), "sync", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=clean_env(),
        timeout=300,
    )
    if proc.returncode != 0:
        first = (proc.stderr or proc.stdout).strip().splitlines()
        return False, "`integration-assets sync` is not available yet" + (f" ({first[-1]})" if first else "")
    if "--json" not in proc.stdout:
        return False, "`integration-assets sync` has no --json option yet"
    return True, ""


# --------------------------------------------------------------------------------------------------------
# Postgres
# --------------------------------------------------------------------------------------------------------
class Pg:
    def __init__(self, server: str, run_id: str, keep: bool) -> None:
        self.server = server.rstrip("/")  # postgresql://user@host:port
        self.run_id = run_id
        self.keep = keep
        self.created: list[str] = []

    def url(self, db: str, driver: str = "") -> str:
        scheme, rest = self.server.split("://", 1)
        return f"{scheme}{'+' + driver if driver else ''}://{rest}/{db}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.url("postgres"), autocommit=True)

    def create(self, suffix: str) -> str:
        name = f"{self.run_id}_{suffix}"
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        return name

    def drop(self, name: str) -> None:
        if self.keep:
            return
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        for name in list(self.created):
            with contextlib.suppress(psycopg.Error):
                self.drop(name)

    def version(self) -> str:
        with self.admin() as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else "?"


@dataclass(frozen=True)
class Target:
    """Where a contender's rows end up, and how to recognise one row (for the rewrite count)."""

    table: str  # schema-qualified
    key: str
    where: str = "TRUE"  # a filter, with {t} standing for the table's alias

    def filter(self, alias: str) -> str:
        return self.where.format(t=alias)


def table_exists(conn: psycopg.Connection, table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


def count_rows(url: str, target: Target) -> int | None:
    with psycopg.connect(url) as conn:
        if not table_exists(conn, target.table):
            return None
        row = conn.execute(f"SELECT count(*) FROM {target.table} t WHERE {target.filter('t')}").fetchone()
        return int(row[0]) if row else None


def snapshot(url: str, target: Target) -> bool:
    """Remember (key, xmin) of every row, to count what the next load rewrites."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS bench_meta")
        conn.execute("DROP TABLE IF EXISTS bench_meta.snap")
        if not table_exists(conn, target.table):
            return False
        conn.execute(
            f"CREATE TABLE bench_meta.snap AS SELECT t.{target.key}::text AS k, t.xmin::text AS x "
            f"FROM {target.table} t WHERE {target.filter('t')}"
        )
        conn.execute("CREATE INDEX ON bench_meta.snap (k)")
        conn.execute("ANALYZE bench_meta.snap")
        return True


def rewritten_since_snapshot(url: str, target: Target) -> dict[str, int] | None:
    with psycopg.connect(url) as conn:
        if not (table_exists(conn, target.table) and table_exists(conn, "bench_meta.snap")):
            return None
        row = conn.execute(
            f"""SELECT count(*) FILTER (WHERE s.k IS NULL OR s.x <> t.xmin::text),
                       (SELECT count(*) FROM bench_meta.snap s2
                         WHERE NOT EXISTS (SELECT 1 FROM {target.table} t2
                                            WHERE t2.{target.key}::text = s2.k AND {target.filter("t2")}))
                  FROM {target.table} t LEFT JOIN bench_meta.snap s ON s.k = t.{target.key}::text
                 WHERE {target.filter("t")}"""
        ).fetchone()
        assert row is not None
        return {"rows_written": int(row[0]), "rows_removed": int(row[1])}


def checkpoint(url: str) -> None:
    """Flush dirty buffers so a load does not pay for the previous one's writes."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


# --------------------------------------------------------------------------------------------------------
# contenders
# --------------------------------------------------------------------------------------------------------
@dataclass
class StepResult:
    contender: str
    rep: int
    step: str
    ok: bool
    wall_s: float | None = None
    peak_rss_mib: float | None = None
    rows_in_file: int | None = None
    rows_in_table: int | None = None
    rows_written: int | None = None
    rows_removed: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class Contender:
    name = ""
    label = ""
    target = Target("", "")

    def __init__(self, args: argparse.Namespace, pg: Pg, run_dir: Path) -> None:
        self.args, self.pg, self.run_dir = args, pg, run_dir
        self.db = ""
        self.setup_detail: dict[str, Any] = {}  # one-time setup outside the clock, shown with the first load

    def setup(self, rep: int) -> None:
        self.db = self.pg.create(f"{self.name}_{rep}")

    def teardown(self) -> None:
        if self.db:
            self.pg.drop(self.db)
        if not self.args.keep_db:  # working files of a repetition run to gigabytes; the logs stay
            for path in self.scratch():
                shutil.rmtree(path, ignore_errors=True)

    def scratch(self) -> list[Path]:
        """Directories this contender's repetition leaves behind (removed unless --keep-db)."""
        return []

    @property
    def url(self) -> str:
        return self.pg.url(self.db)

    def command(self, step: str, path: Path, rep: int) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def details(self, out: dict[str, Any] | None) -> dict[str, Any]:
        return out or {}


class Baseline(Contender):
    name = "baseline"
    label = "plain staged load (COPY + INSERT … ON CONFLICT)"
    target = Target("bench_baseline.contacts", "record_id")

    def setup(self, rep: int) -> None:
        super().setup(rep)
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA bench_baseline")

    def command(self, step: str, path: Path, rep: int) -> tuple[list[str], dict[str, str]]:
        return [
            str(PY), str(BENCH / "baseline.py"), "--dsn", self.url, "--file", str(path),
            "--table", self.target.table, "--load-id", f"{step}-{rep}",
        ], clean_env()  # fmt: skip


class Dlt(Contender):
    name = "dlt"
    label = "dlt merge (csv loader)"
    target = Target("bench_dlt.contacts", "record_id")

    def __init__(self, args: argparse.Namespace, pg: Pg, run_dir: Path) -> None:
        super().__init__(args, pg, run_dir)
        self.python = ensure_dlt_venv()
        self.pipelines = run_dir / "dlt-pipelines"

    def setup(self, rep: int) -> None:
        super().setup(rep)
        self.pipeline_name = f"bench_contacts_{rep}"
        shutil.rmtree(self.pipelines / self.pipeline_name, ignore_errors=True)

    def scratch(self) -> list[Path]:
        return [self.pipelines / self.pipeline_name]

    def command(self, step: str, path: Path, rep: int) -> tuple[list[str], dict[str, str]]:
        return [
            str(self.python), str(BENCH / "dlt_load.py"), "--dsn", self.url, "--file", str(path),
            "--pipelines-dir", str(self.pipelines), "--pipeline-name", self.pipeline_name, "--dataset", "bench_dlt",
        ], clean_env()  # fmt: skip


class Ours(Contender):
    name = "ours"
    label = "integration-assets sync"
    # canonical contacts, keyed by (source_system, source_id); see integration_assets/warehouse/schema/canonical.py
    target = Target("public.contacts", "source_id", "{t}.source_system = 'hubspot'")

    def setup(self, rep: int) -> None:
        super().setup(rep)
        self.data_dir = self.run_dir / f"data-{rep}"
        self.dagster_home = self.run_dir / f"dagster-{rep}"
        for d in (self.data_dir, self.dagster_home):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
        if (ROOT / "dagster.yaml").exists():  # the project's instance settings, as `make demo` installs them
            shutil.copyfile(ROOT / "dagster.yaml", self.dagster_home / "dagster.yaml")
        # Once per deployment, not per load (as the baseline's and dlt's databases exist before their clocks
        # start): migrate the warehouse and create the Dagster instance's storage. Timed and reported apart.
        t0 = time.perf_counter()
        for cmd in (["db", "upgrade"], ["status", "--json"]):
            subprocess.run(
                [str(SYNC_CMD), *cmd],
                env=self.env(),
                cwd=ROOT,
                check=True,
                capture_output=True,
                timeout=self.args.timeout,
            )
        self.setup_detail = {"setup_s": time.perf_counter() - t0}

    def scratch(self) -> list[Path]:
        return [self.data_dir, self.dagster_home]

    def command(self, step: str, path: Path, rep: int) -> tuple[list[str], dict[str, str]]:
        inbox = self.data_dir / "inbox" / "hubspot" / "contacts"
        inbox.mkdir(parents=True, exist_ok=True)
        # The file "arrives" before the clock starts; replays arrive under a new name, as a re-sent export would.
        names = {"first": "contacts.csv", "replay": "contacts-resent.csv", "changed": "contacts-changed.csv"}
        shutil.copyfile(path, inbox / names[step])
        return [str(SYNC_CMD), "sync", "--json"], self.env()

    def env(self) -> dict[str, str]:
        env = clean_env()
        env.update(
            INTEGRATION_WAREHOUSE_URL=self.pg.url(self.db, "psycopg"),
            INTEGRATION_DATA_DIR=str(self.data_dir),
            DAGSTER_HOME=str(self.dagster_home),
            # The file is complete before the clock starts: no need to wait for it to settle.
            INTEGRATION_INBOX_SETTLE_SECONDS="0",
        )
        return env

    def details(self, out: dict[str, Any] | None) -> dict[str, Any]:
        """Sum the per-file counters of ``sync --json`` (see docs/BENCHMARKS.md for the expected shape)."""
        if not out:
            return {"note": "no JSON object on stdout"}
        loads = out.get("loads")
        if not isinstance(loads, list):
            return {"note": "JSON has no 'loads' list", "raw": out}
        keys = (
            "rows_read",
            "rows_inserted",
            "rows_updated",
            "rows_unchanged",
            "rows_duplicate",
            "rows_quarantined",
        )
        total: dict[str, Any] = {
            k: sum(int(x.get(k) or 0) for x in loads if isinstance(x, dict)) for k in keys
        }
        total["duration_ms"] = sum(float(x.get("duration_ms") or 0) for x in loads if isinstance(x, dict))
        total["statuses"] = sorted({str(x.get("status")) for x in loads if isinstance(x, dict)})
        total["files"] = len(loads)
        return total


def run_contender(c: Contender, rep: int, files: dict[str, Path], rows: dict[str, int]) -> list[StepResult]:
    results: list[StepResult] = []
    c.setup(rep)
    try:
        for step in STEPS:
            res = StepResult(c.name, rep, step, ok=False, rows_in_file=rows[step])
            had_snapshot = snapshot(c.url, c.target) if step != "first" else False
            checkpoint(c.url)
            cmd, env = c.command(step, files[step], rep)
            log(f"rep {rep} {c.name}: {STEP_TITLES[step]} ...")
            m = run_measured(cmd, env, c.run_dir / f"{c.name}-{rep}-{step}", c.args.timeout)
            res.wall_s, res.peak_rss_mib = m.wall_s, m.peak_rss_mib
            res.detail = c.details(last_json_object(m.stdout))
            if step == "first":
                res.detail.update(c.setup_detail)
            if m.returncode != 0:
                res.error = f"exit {m.returncode}: {error_summary(m)}\n{m.stderr_tail[-3000:]}"
                log(f"rep {rep} {c.name} {step} FAILED (exit {m.returncode}); stderr tail:\n{m.stderr_tail}")
                results.append(res)
                break
            res.ok = True
            res.rows_in_table = count_rows(c.url, c.target)
            if had_snapshot:
                diff = rewritten_since_snapshot(c.url, c.target) or {}
                res.rows_written, res.rows_removed = diff.get("rows_written"), diff.get("rows_removed")
            else:
                res.rows_written = res.rows_in_table
            log(
                f"rep {rep} {c.name}: {STEP_TITLES[step]} {res.wall_s:.2f} s, peak RSS {res.peak_rss_mib:.0f} MiB, "
                f"rows written {res.rows_written}"
            )
            results.append(res)
    finally:
        c.teardown()
    return results


# --------------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------------
def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarise(results: list[StepResult]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name in CONTENDERS:
        for step in STEPS:
            ok = [r for r in results if r.contender == name and r.step == step and r.ok]
            if not ok:
                continue
            walls = [r.wall_s for r in ok if r.wall_s is not None]
            wall = median(walls)
            rows_in_file = ok[0].rows_in_file or 0
            s: dict[str, Any] = {
                "n": len(ok),
                "wall_s": wall,
                "wall_s_min": min(walls),
                "wall_s_max": max(walls),
                "rows_per_s": rows_in_file / wall if wall else None,
                "peak_rss_mib": median([r.peak_rss_mib for r in ok if r.peak_rss_mib is not None]),
                "rows_written": median([r.rows_written for r in ok if r.rows_written is not None]),
                "rows_in_table": median([r.rows_in_table for r in ok if r.rows_in_table is not None]),
            }
            numeric_detail_keys = {k for r in ok for k, v in r.detail.items() if isinstance(v, int | float)}
            s["detail"] = {
                k: median([float(r.detail[k]) for r in ok if isinstance(r.detail.get(k), int | float)])
                for k in sorted(numeric_detail_keys)
            }
            out.setdefault(name, {})[step] = s
    return out


def _fmt(x: Any, spec: str = ",.0f") -> str:
    return "—" if x is None else format(x, spec)


def _detail_text(name: str, d: dict[str, Any]) -> str:
    if name == "baseline":
        return f"COPY {_fmt(d.get('copy_s'), '.2f')} s + upsert {_fmt(d.get('upsert_s'), '.2f')} s"
    if name == "dlt":
        return (
            f"extract {_fmt(d.get('extract_s'), '.1f')} + normalize {_fmt(d.get('normalize_s'), '.1f')}"
            f" + load {_fmt(d.get('load_s'), '.1f')} s"
        )
    if name == "ours" and d:
        keys = ("rows_inserted", "rows_updated", "rows_unchanged", "rows_duplicate", "rows_quarantined")
        parts = [f"{k.removeprefix('rows_')} {_fmt(d.get(k))}" for k in keys if k in d]
        if "duration_ms" in d:
            parts.append(f"{d['duration_ms'] / 1000:.2f} s in-process")
        if "setup_s" in d:
            parts.append(
                f"one-time setup before the clock (db upgrade + Dagster instance) {d['setup_s']:.2f} s"
            )
        return ", ".join(parts)
    return ""


def markdown(
    summary: dict[str, Any],
    meta: dict[str, Any],
    skipped: dict[str, str],
    labels: dict[str, str],
    failures: dict[tuple[str, str], str],
) -> str:
    lines = [
        f"{meta['rows']:,} rows, {meta['bytes'] / 2**20:.0f} MiB, {meta['distinct_ids']:,} distinct ids; "
        f"medians of {meta['repeat']} run(s); wall time of the whole subprocess; "
        f"1-min load average {meta['loadavg'][0]:.1f} before, {meta['loadavg'][1]:.1f} after "
        f"({os.cpu_count()} CPUs).",
        "",
        "| contender | step | wall s (median) | min–max s | rows/s | peak RSS MiB | rows written | rows in table | breakdown |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in CONTENDERS:
        if name in skipped:
            lines.append(f"| {labels[name]} | — | not measured: {skipped[name]} | | | | | | |")
            continue
        for step in STEPS:
            s = summary.get(name, {}).get(step)
            if not s:
                why = failures.get((name, step), "not run (an earlier step failed)")
                lines.append(f"| {labels[name]} | {STEP_TITLES[step]} | {why} | | | | | | |")
                continue
            lines.append(
                f"| {labels[name]} | {STEP_TITLES[step]} | {s['wall_s']:.2f} | {s['wall_s_min']:.2f}–{s['wall_s_max']:.2f} "
                f"| {_fmt(s['rows_per_s'])} | {_fmt(s['peak_rss_mib'])} | {_fmt(s['rows_written'])} "
                f"| {_fmt(s['rows_in_table'])} | {_detail_text(name, s['detail'])} |"
            )
    lines += ["", "Ratios of median wall times (lower is better for the numerator):", ""]
    lines += [
        "| ratio | " + " | ".join(STEP_TITLES[s] for s in STEPS) + " | peak RSS |",
        "|---|" + "---:|" * 4,
    ]

    def ratio(a: str, b: str, step: str, key: str = "wall_s") -> str:
        x = summary.get(a, {}).get(step, {}).get(key)
        y = summary.get(b, {}).get(step, {}).get(key)
        return f"{x / y:.2f}×" if x and y else "n/a"

    for a, b in (("ours", "baseline"), ("ours", "dlt"), ("dlt", "baseline")):
        cells = [ratio(a, b, step) for step in STEPS] + [ratio(a, b, "first", "peak_rss_mib")]
        lines.append(f"| {a} / {b} | " + " | ".join(cells) + " |")
    lines += ["", "Replay time as a share of the same contender's first load:", ""]
    lines += ["| contender | identical replay / first | 5%-changed replay / first |", "|---|---:|---:|"]
    for name in CONTENDERS:
        if name in summary and "first" in summary[name]:
            first = summary[name]["first"]["wall_s"]
            cells = [
                f"{summary[name][s]['wall_s'] / first:.0%}" if s in summary[name] else "n/a"
                for s in ("replay", "changed")
            ]
            lines.append(f"| {labels[name]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------
def git_commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout.strip()
    return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--rows", type=int, default=1_000_000, help="rows in the generated export (default 1,000,000)"
    )
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--change-rate", type=float, default=0.05, help="share of records changed for the last replay"
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs per contender; the report shows medians")
    ap.add_argument(
        "--only", default=",".join(CONTENDERS), help="comma-separated subset of: ours,baseline,dlt"
    )
    ap.add_argument(
        "--server",
        default=os.environ.get("BENCH_PG_SERVER", "postgresql://postgres@127.0.0.1:5432"),
        help="PostgreSQL server URL without a database (a superuser: the bench creates and drops databases)",
    )
    ap.add_argument("--timeout", type=float, default=1800, help="seconds before one load is killed")
    ap.add_argument(
        "--keep-db",
        action="store_true",
        help="leave the bench databases (and each load's working files) behind for inspection",
    )
    args = ap.parse_args(argv)

    only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(only) - set(CONTENDERS)
    if unknown:
        ap.error(f"unknown contender(s) {sorted(unknown)}; choose from {','.join(CONTENDERS)}")
    WORK.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_id = f"ia_bench_{secrets.token_hex(4)}"
    run_dir = WORK / f"run-{stamp}-{run_id}"

    pg = Pg(args.server, run_id, args.keep_db)
    try:
        server_version = pg.version()
    except psycopg.Error as exc:
        log(f"cannot reach PostgreSQL at {args.server} ({exc}); `make services` starts it")
        return 2

    base, changed, meta, meta_changed = ensure_inputs(args.rows, args.seed, args.change_rate)
    run_dir.mkdir(parents=True)
    files = {"first": base, "replay": base, "changed": changed}
    rows = {"first": meta["rows"], "replay": meta["rows"], "changed": meta_changed["rows"]}

    skipped: dict[str, str] = {c: "not selected (--only)" for c in CONTENDERS if c not in only}
    if "ours" in only:
        ok, why = sync_available()
        if not ok:
            skipped["ours"] = why
            log(f"skipping our pipeline: {why}")
    factories: dict[str, Callable[[], Contender]] = {
        "ours": lambda: Ours(args, pg, run_dir),
        "baseline": lambda: Baseline(args, pg, run_dir),
        "dlt": lambda: Dlt(args, pg, run_dir),
    }
    active = [c for c in CONTENDERS if c in only and c not in skipped]
    contenders = {name: factories[name]() for name in active}
    labels = {name: cls.label for name, cls in (("ours", Ours), ("baseline", Baseline), ("dlt", Dlt))}

    def on_signal(signum: int, _frame: Any) -> None:
        for pgid in list(_running):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    results: list[StepResult] = []
    load_before = os.getloadavg()
    log(
        f"run {run_id}: {', '.join(active) or 'no contender'}; {args.repeat} repetition(s); logs in {run_dir}"
    )
    try:
        for rep in range(1, args.repeat + 1):
            # rotate the order so no contender always runs first (or right after the heaviest one)
            order = active[(rep - 1) % len(active) :] + active[: (rep - 1) % len(active)] if active else []
            for name in order:
                results += run_contender(contenders[name], rep, files, rows)
    finally:
        pg.drop_all()

    summary = summarise(results)
    failures: dict[tuple[str, str], str] = {}
    for r in results:
        if not r.ok and (r.contender, r.step) not in failures:
            first_line = (r.error or "").splitlines()[0] if r.error else "failed"
            failures[(r.contender, r.step)] = (
                f"FAILED after {r.wall_s:.0f} s ({first_line}; see {run_dir.name})"
            )
    load_after = os.getloadavg()
    report_meta = {**meta, "repeat": args.repeat, "loadavg": (load_before[0], load_after[0])}
    table = markdown(summary, report_meta, skipped, labels, failures)
    out = {
        "timestamp": stamp,
        "run_id": run_id,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "server"},
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "postgres": server_version,
            # 1/5/15-min load averages before and after: on a shared machine, how noisy the run was
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in load_after],
            "git_commit": git_commit(),
        },
        "inputs": {"export": meta, "changed": meta_changed},
        "skipped": skipped,
        "summary": summary,
        "runs": [asdict(r) for r in results],
        "markdown": table,
    }
    path = WORK / f"results-{stamp}.json"
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(table)
    print(f"(raw measurements: {path.relative_to(ROOT)})")
    failed = [r for r in results if not r.ok]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
