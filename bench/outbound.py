"""The outbound chain under load (issue 12): deal won → Odoo order → EasyPost label → write-back.

Every external API is a local fake (``integration_assets/sandbox/fakes``) that answers after a fixed
``--latency`` (50 ms) and serves at most ``--in-flight`` (8) calls at a time: the 9th waits, as behind a
provider's concurrency limit. Our side allows 8 calls in flight per API too (policy
``outbound.concurrency``). Two scenarios, each on a fresh PostgreSQL database and fresh fakes:

**throughput**: ``--chains`` deals (default 300) exist in HubSpot and in the warehouse at stage
``contractsent``; a load generator posts signed HubSpot ``deal.propertyChange`` webhooks (dealstage →
closedwon), one per deal, at ``--rate`` per second (0 = all at once) to the real receiver
(``webhooks/``, under uvicorn), which enqueues them; a drain loop applies them to the ``deals`` table
(the events path, as ``integration-assets events drain``), where the capture in the merge transaction
writes ``deal.won`` to the outbox; the relay and one consumer per step (each looping ``run_step``; one
process each, or ``--layout threads``) carry the chain on. A chain is complete when the HubSpot fake has
answered the PATCH that writes the deal's tracking number. Reported: complete chains per second (chains ÷
time from the first webhook to the last write-back) and the latency of each chain from its webhook to that
PATCH (p50/p95/p99/max), medians over ``--repeat`` runs, plus duplicates found in the fakes (orders per
deal, labels per deal), the calls per API by kind, and the fakes' own time per call.

**outage**: side by side, the same webhook stream (``--outage-rate`` per second) goes to our receiver and
to a naive synchronous handler (``bench/outbound_naive.py``: the same calls in sequence inside the webhook
request, plain httpx), each with its own set of fakes; ``--outage-lead`` seconds in, both EasyPost fakes
go down for ``--outage`` seconds (60 s for the documented figures): every call hangs until the outage ends
and then gets a 503, so a client with a shorter timeout times out. Reported per contender: webhook requests
answered with a 2xx within 1 s, status counts, chains complete at the end, and chains complete whose won
event arrived while EasyPost was down (they can only complete after it returns).

Each world's fakes run in a process of their own (:func:`world_main`; two worlds in one process slowed each
other's answers through the GIL), the harness only sends webhooks and reads the results.

    .venv/bin/python bench/outbound.py                              # both scenarios (~6 min)
    .venv/bin/python bench/outbound.py --only throughput --chains 200 --repeat 1
    .venv/bin/python bench/outbound.py --only outage --outage 10    # a quick look at the outage scenario

Needs PostgreSQL (INTEGRATION_BENCH_PG_ADMIN_URL, default postgres@127.0.0.1:5432). Prints Markdown tables
and writes every measurement to ``bench/.work/outbound-<timestamp>.json``. See docs/BENCHMARKS.md,
"Outbound chain (issue 12)".
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import pgdb  # noqa: E402 - bench/ is on sys.path when a script runs
from events_latency import HOST, free_port, percentile, wait_healthy  # noqa: E402

from integration_assets.sandbox.fakes._server import FakeServer, Fault, LoggedRequest  # noqa: E402

WORK = BENCH / ".work"
WON = "closedwon"
DEAL_ID_BASE = 31_000_000_000  # HubSpot-sized ids, the same in every world so the two contenders match
PATCH_PREFIX = "/crm/v3/objects/deals/"
# An idle relay or step consumer looks again after this long (the SQL queue's own wait polls every 50 ms,
# which for eight idle consumers cost half a core of the two).
IDLE_POLL_S = 0.1


def log(msg: str) -> None:
    print(f"[outbound-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------
# fakes: a fixed latency per call, at most N calls in flight, an optional outage
# --------------------------------------------------------------------------------------------------------
class Outage:
    """A window during which a fake is down: each call hangs until the window ends, then gets a 503."""

    def __init__(self) -> None:
        self.start = float("inf")
        self.end = float("-inf")

    def schedule(self, start: float, seconds: float) -> None:
        self.start, self.end = start, start + seconds

    def fault(self, req: LoggedRequest) -> Fault | None:
        now = time.time()
        if not self.start <= now < self.end:
            return None
        body = {"error": {"code": "SERVICE_UNAVAILABLE", "message": "down for the benchmark", "errors": []}}
        return Fault(503, body, delay=self.end - now, label="outage")


@dataclass
class Gate:
    """Counts what a capped fake served: calls, and the most calls that were in flight at once."""

    calls: int = 0
    in_flight: int = 0
    peak: int = 0
    queued_s: float = 0.0  # time calls waited for a free slot
    served_s: float = 0.0  # arrival to answer, summed
    lock: threading.Lock = field(default_factory=threading.Lock)


def cap(fake: FakeServer, latency_s: float, in_flight: int, outage: Outage | None = None) -> Gate:
    """Make ``fake`` answer each call after ``latency_s``, at most ``in_flight`` calls at a time."""
    sem = threading.BoundedSemaphore(in_flight)
    gate = Gate()
    handle = fake.handle

    def capped(req: LoggedRequest) -> tuple[int, dict[str, str], Any]:
        t0 = time.monotonic()
        with sem:
            with gate.lock:
                gate.queued_s += time.monotonic() - t0
                gate.calls += 1
                gate.in_flight += 1
                gate.peak = max(gate.peak, gate.in_flight)
            try:
                time.sleep(latency_s)
                return handle(req)
            finally:
                with gate.lock:
                    gate.in_flight -= 1
                    gate.served_s += time.time() - req.at

    fake.handle = capped  # type: ignore[method-assign]
    if outage is not None:
        own = fake.fault  # the fake's own fault knobs still apply outside the outage

        def fault(req: LoggedRequest) -> Fault | None:
            return outage.fault(req) or (own(req) if own is not None else None)

        fake.fault = fault
    return gate


# --------------------------------------------------------------------------------------------------------
# a world: the three fakes with N deals ready to be won
# --------------------------------------------------------------------------------------------------------
@dataclass
class World:
    hubspot: Any
    odoo: Any
    easypost: Any
    deals: list[str]
    gates: dict[str, Gate]
    outage: Outage

    def env(self) -> dict[str, str]:
        return {
            "HUBSPOT_BASE_URL": self.hubspot.url,
            "HUBSPOT_ACCESS_TOKEN": self.hubspot.token,
            "ODOO_URL": self.odoo.url,
            "ODOO_DB": self.odoo.db,
            "ODOO_USERNAME": self.odoo.login,
            "ODOO_API_KEY": self.odoo.api_key,
            "EASYPOST_BASE_URL": self.easypost.url,
            "EASYPOST_API_KEY": self.easypost.api_key,
        }

    def stop(self) -> None:
        for fake in (self.hubspot, self.odoo, self.easypost):
            fake.stop()


PRODUCTS = 20


def build_world(n: int, seed: int, latency_s: float, in_flight: int) -> World:
    """Fakes holding ``n`` open deals (stage contractsent), each with a company linked to an Odoo partner
    that has a US address, and 1–3 line items whose SKUs are Odoo products (the demo's data, at scale)."""
    from integration_assets.sandbox.demo_outbound import seed_world
    from integration_assets.sandbox.fakes.easypost import FakeEasyPost
    from integration_assets.sandbox.fakes.hubspot import FakeHubSpot
    from integration_assets.sandbox.fakes.odoo import FakeOdoo

    rng = random.Random(seed)  # noqa: S311 - reproducible sample data
    hs, odoo, ep = FakeHubSpot().start(), FakeOdoo().start(), FakeEasyPost().start()
    seeded = seed_world(hs, odoo, ep, n=n, rng=rng, deal_id_base=DEAL_ID_BASE, products=PRODUCTS)
    outage = Outage()
    gates = {
        "hubspot": cap(hs, latency_s, in_flight),
        "odoo": cap(odoo, latency_s, in_flight),
        "easypost": cap(ep, latency_s, in_flight, outage),
    }
    return World(hs, odoo, ep, [d.deal_id for d in seeded], gates, outage)


def _write_json(path: Path, doc: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, default=str))
    tmp.replace(path)  # readers never see half a file


def world_main(spec_path: str) -> None:
    """Subprocess: one world's fakes, served from their own process (two worlds in one process slowed each
    other's answers 2-3x through the GIL). Talks to the harness through files in the spec's directory:
    writes ``env.json`` when serving; reads ``start.json`` (the clock's start and the outage window: calls
    are counted from then); writes ``done.json`` (deal → write-back time) twice a second; on ``stop`` writes
    ``result.json`` and exits."""
    spec = json.loads(Path(spec_path).read_text())
    d = Path(spec["dir"])
    sys.setswitchinterval(0.0005)  # many handler threads, each mostly waiting: hand the GIL over quickly
    world = build_world(spec["n"], spec["seed"], spec["latency"], spec["in_flight"])
    try:
        _write_json(d / "env.json", {"env": world.env(), "deals": world.deals})
        started: float | None = None
        while not (d / "stop").exists():
            if started is None and (d / "start.json").exists():
                start = json.loads((d / "start.json").read_text())
                started = float(start["t0"])
                for gate in world.gates.values():  # the seeding's calls are not part of the run
                    with gate.lock:
                        gate.calls = gate.peak = 0
                        gate.queued_s = gate.served_s = 0.0
                if start.get("outage"):
                    begin, end = start["outage"]
                    world.outage.schedule(float(begin), float(end) - float(begin))
            _write_json(d / "done.json", written_back(world))
            time.sleep(0.5)
        gates = world.gates
        _write_json(
            d / "result.json",
            {
                "done": written_back(world),
                "fakes": duplicates(world),
                "calls": {k: g.calls for k, g in gates.items()},
                "peak_in_flight": {k: g.peak for k, g in gates.items()},
                "fake_ms_per_call": {
                    k: {
                        "queued": round(g.queued_s / g.calls * 1000, 1),
                        "served": round(g.served_s / g.calls * 1000, 1),
                    }
                    for k, g in gates.items()
                    if g.calls
                },
                "call_mix": call_mix(world, started or 0.0),
            },
        )
    finally:
        world.stop()


class RemoteWorld:
    """A world served by its own process (:func:`world_main`), seen from the harness."""

    def __init__(self, args: argparse.Namespace, n: int, workdir: Path, name: str) -> None:
        self.dir = workdir / f"world-{name}-{uuid.uuid4().hex[:6]}"
        self.dir.mkdir(parents=True)
        spec = {
            "dir": str(self.dir),
            "n": n,
            "seed": args.seed,
            "latency": args.latency,
            "in_flight": args.in_flight,
        }
        (self.dir / "spec.json").write_text(json.dumps(spec))
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--_world", str(self.dir / "spec.json")], cwd=ROOT
        )
        deadline = time.monotonic() + 120
        while not (self.dir / "env.json").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {name} world's fakes did not start")
            time.sleep(0.1)
        info = json.loads((self.dir / "env.json").read_text())
        self._env: dict[str, str] = info["env"]
        self.deals: list[str] = info["deals"]
        self.result: dict[str, Any] = {}

    def env(self) -> dict[str, str]:
        return dict(self._env)

    def start(self, t0: float, outage: tuple[float, float] | None = None) -> None:
        _write_json(self.dir / "start.json", {"t0": t0, "outage": outage})

    def done(self) -> dict[str, float]:
        try:
            return {k: float(v) for k, v in json.loads((self.dir / "done.json").read_text()).items()}
        except (OSError, ValueError):
            return {}

    def stop(self) -> dict[str, Any]:
        if self.proc.poll() is None:
            (self.dir / "stop").touch()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError, ValueError):
            self.result = json.loads((self.dir / "result.json").read_text())
        return self.result


# --------------------------------------------------------------------------------------------------------
# the warehouse: the same companies and deals, loaded the production way (an API pull, then the load)
# --------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def seed_warehouse(world: RemoteWorld, url: str, data_dir: Path) -> dict[str, int]:
    """Pull companies and deals from the HubSpot fake into an inbox (connectors/landing.py) and load the
    files (ingest/load.py): the warehouse knows each deal at stage contractsent before the clock starts."""
    from integration_assets.sandbox.demo_outbound import load_from_hubspot
    from integration_assets.settings import get_settings
    from integration_assets.warehouse import db

    with environ({"INTEGRATION_WAREHOUSE_URL": url, "INTEGRATION_DATA_DIR": str(data_dir)}):
        env = world.env()
        return load_from_hubspot(
            env["HUBSPOT_BASE_URL"], env["HUBSPOT_ACCESS_TOKEN"], get_settings(), db.get_engine(url)
        )


# --------------------------------------------------------------------------------------------------------
# processes: receiver, drainer, outbound workers (ours); the naive app
# --------------------------------------------------------------------------------------------------------
def worker_main(
    stop_file: str, steps: list[str], max_s: float, relay_too: bool, drain_pause: float | None
) -> None:
    """Subprocess: loop the drain (``drain_pause`` set: drain, pause, repeat, as ``integration-assets events
    drain`` run in a loop), ``relay`` (``relay_too``) and ``run_step`` for each of ``steps``, each in its own
    thread, until ``stop_file`` exists or ``max_s`` passed. Touches ``<stop_file>.ready.<pid>`` once set up;
    prints its counts as one JSON line at the end."""
    from integration_assets.events.drain import drain
    from integration_assets.outbound.relay import relay
    from integration_assets.outbound.runner import open_step_queue, run_step
    from integration_assets.outbound.targets import Targets
    from integration_assets.policies import load_policies
    from integration_assets.settings import get_settings
    from integration_assets.warehouse import db

    engine = db.get_engine(get_settings().warehouse_url)
    policy = load_policies().outbound
    targets = Targets()  # one set of clients (connections, Odoo session) for every step of this process
    deadline = time.monotonic() + max_s
    totals: dict[str, Counter[str]] = {s: Counter() for s in steps}
    counts = Counter[str]()
    errors: list[str] = []

    def running() -> bool:
        return not os.path.exists(stop_file) and time.monotonic() < deadline

    def failed(what: str, exc: Exception) -> None:
        errors.append(f"{what}: {type(exc).__name__}: {exc}"[:300])
        time.sleep(0.5)

    def drain_loop() -> None:
        assert drain_pause is not None
        while running():
            try:
                report = drain(engine=engine)
            except Exception as exc:  # noqa: BLE001 - a bench loop reports and goes on
                failed("drain", exc)
                continue
            counts["drained"] += report.totals.events_in
            time.sleep(drain_pause)

    def relay_loop() -> None:
        from integration_assets.outbound.runner import known_steps

        queues = {s: open_step_queue(s, engine=engine) for s in known_steps()}  # opened once, not per round
        try:
            while running():
                try:
                    report = relay(engine, queues=queues)
                except Exception as exc:  # noqa: BLE001 - a bench loop reports and goes on
                    failed("relay", exc)
                    continue
                counts["relayed"] += report.published
                if not report.published:
                    time.sleep(IDLE_POLL_S)
        finally:
            for q in queues.values():
                q.close()

    def step_loop(step: str) -> None:
        queue = open_step_queue(step, engine=engine)
        try:
            while running():
                try:
                    report = run_step(engine, step, targets=targets, policy=policy, queue=queue)
                except Exception as exc:  # noqa: BLE001 - a bench loop reports and goes on
                    failed(step, exc)
                    continue
                for key in ("sent", "found", "skipped", "dead_lettered", "retried", "duplicates"):
                    totals[step][key] += int(getattr(report, key))
                if not report.received:
                    time.sleep(IDLE_POLL_S)
        finally:
            queue.close()

    threads = [threading.Thread(target=step_loop, args=(s,), name=f"step-{s}", daemon=True) for s in steps]
    if relay_too:
        threads.append(threading.Thread(target=relay_loop, name="relay", daemon=True))
    if drain_pause is not None:
        threads.append(threading.Thread(target=drain_loop, name="drain", daemon=True))
    # Warm up before saying ready: the first drain loads the contracts, the first run of a step its code.
    if drain_pause is not None:
        drain(engine=engine)
    for step in steps:
        run_step(engine, step, max_messages=0, targets=targets, policy=policy)
    for t in threads:
        t.start()
    Path(f"{stop_file}.ready.{os.getpid()}").touch()
    for t in threads:
        t.join()
    print(
        json.dumps(
            {"steps": {s: dict(c) for s, c in totals.items()}, "counts": dict(counts), "errors": errors[:20]}
        ),
        flush=True,
    )


def uvicorn(app: str, port: int, env: dict[str, str], app_dir: Path | None = None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "uvicorn", app, "--factory", "--host", HOST, "--port", str(port)]
    cmd += ["--log-level", "warning", "--no-access-log"]
    if app_dir is not None:
        cmd += ["--app-dir", str(app_dir)]
    return subprocess.Popen(cmd, env=env, cwd=ROOT)


def stop(proc: subprocess.Popen[bytes] | None, timeout_s: float = 30) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Ours:
    """Our side for one world: receiver, drainer, relay and step consumers, on database ``url``."""

    world: RemoteWorld
    url: str
    workdir: Path
    pause_s: float
    layout: str
    budget_s: float
    secret: str = field(default_factory=lambda: "bench-hubspot-" + secrets.token_hex(12))
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    base_url: str = ""
    stop_file: Path = Path()

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            **self.world.env(),
            "INTEGRATION_WAREHOUSE_URL": self.url,
            "INTEGRATION_QUEUE_URL": "sql",
            "HUBSPOT_CLIENT_SECRET": self.secret,
            "INTEGRATION_WEBHOOK_PUBLIC_URL": self.base_url,
            "INTEGRATION_DATA_DIR": str(self.workdir / "data"),
            "INTEGRATION_LOG_LEVEL": "WARNING",
        }

    def start(self) -> None:
        from integration_assets.outbound.runner import known_steps

        port = free_port()
        self.base_url = f"http://{HOST}:{port}"
        self.stop_file = self.workdir / f"stop-{uuid.uuid4().hex[:8]}"
        env = self.env()
        receiver = uvicorn("integration_assets.webhooks.app:create_app", port, env)
        self.procs.append(receiver)
        steps = list(known_steps())
        # The drain, the relay and each step: each its own process (or all threads of one).
        roles: list[list[str]] = [["--drain", str(self.pause_s)], ["--relay"]] + [
            ["--steps", s] for s in steps
        ]
        if self.layout == "threads":
            roles = [["--drain", str(self.pause_s), "--relay", "--steps", ",".join(steps)]]
        for role in roles:
            cmd = [
                sys.executable,
                __file__,
                "--_worker",
                str(self.stop_file),
                "--seconds",
                str(self.budget_s),
                *role,
            ]
            self.workers.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE))
        wait_healthy(self.base_url, receiver)
        deadline = time.monotonic() + 180
        while len(list(self.workdir.glob(f"{self.stop_file.name}.ready.*"))) < len(self.workers):
            if not self.alive() or time.monotonic() > deadline:
                raise RuntimeError("an outbound worker did not start (see its stderr above)")
            time.sleep(0.2)

    def alive(self) -> bool:
        """Every process of ours still running (a crashed consumer ends the wait)."""
        return all(p.poll() is None for p in [*self.procs, *self.workers])

    def finish(self) -> dict[str, Any]:
        self.stop_file.touch()
        reports: dict[str, Any] = {"steps": {}, "counts": {}, "errors": []}
        for w in self.workers:
            try:
                out, _ = w.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                w.kill()
                out, _ = w.communicate()
            lines = [x for x in (out or b"").decode().splitlines() if x.startswith("{")]
            if lines:
                r = json.loads(lines[-1])
                reports["steps"].update(r["steps"])
                reports["counts"].update(r["counts"])
                reports["errors"] += r["errors"]
        for p in self.procs:
            stop(p)
        return reports


# --------------------------------------------------------------------------------------------------------
# load: signed HubSpot deal.propertyChange webhooks (dealstage → closedwon)
# --------------------------------------------------------------------------------------------------------
def won_body(deal_id: str, event_id: int, occurred_ms: int) -> bytes:
    event = {
        "eventId": event_id,
        "subscriptionId": 7,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": occurred_ms,
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": int(deal_id),
        "propertyName": "dealstage",
        "propertyValue": WON,
        "changeSource": "CRM",
        "sourceId": "userId:1",
    }
    return json.dumps([event], separators=(",", ":")).encode()


@dataclass
class Sent:
    deal_id: str
    at: float  # wall clock when the request left
    status: str = ""
    seconds: float | None = None  # until the answer (None: no answer)


def post_won(
    targets: list[tuple[str, str]],
    deals: list[str],
    rate: float,
    *,
    timeout_s: float = 10.0,
    workers: int | None = None,
    on_start: Callable[[float], None] | None = None,
) -> list[list[Sent]]:
    """POST one won webhook per deal to each (base_url, secret) in ``targets``, deal i at t0 + i/rate
    (rate 0: as fast as ``workers`` threads go). Each target has its own threads, so one contender's slow
    answers never delay the other's requests. Returns, per target, one ``Sent`` per deal."""
    import httpx

    from integration_assets.providers import hubspot

    # Enough sender threads that a contender answering only at the timeout still gets its webhooks on
    # schedule (HubSpot sends concurrently; a sender waiting for an answer must not delay the next event).
    workers = workers or (int(rate * timeout_s) + 16 if rate > 0 else 32)
    t0 = time.time() + 0.3
    if on_start is not None:
        on_start(t0)
    results: list[list[Sent]] = [[Sent(d, 0.0) for d in deals] for _ in targets]

    def run(k: int, base_url: str, secret: str) -> None:
        counter = itertools.count()

        def worker() -> None:
            with httpx.Client(base_url=base_url, timeout=timeout_s) as client:
                while (i := next(counter)) < len(deals):
                    if rate > 0:
                        delay = t0 + i / rate - time.time()
                        if delay > 0:
                            time.sleep(delay)
                    now = time.time()
                    ts = int(now * 1000)
                    body = won_body(deals[i], 900_000 + i, ts)
                    headers = {
                        "content-type": "application/json",
                        "x-hubspot-request-timestamp": str(ts),
                        "x-hubspot-signature-v3": hubspot.sign(
                            "POST", base_url + "/webhooks/hubspot", body, ts, secret
                        ),
                        "x-hubspot-signature-version": "v3",
                    }
                    sent = results[k][i]
                    sent.at = now
                    try:
                        r = client.post("/webhooks/hubspot", content=body, headers=headers)
                        sent.status = str(r.status_code)
                    except httpx.TimeoutException:
                        sent.status = "timeout"
                    except httpx.HTTPError as exc:
                        sent.status = type(exc).__name__
                    sent.seconds = time.time() - now

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    runners = [
        threading.Thread(target=run, args=(k, url, secret), daemon=True)
        for k, (url, secret) in enumerate(targets)
    ]
    for t in runners:
        t.start()
    for t in runners:
        t.join()
    return results


# --------------------------------------------------------------------------------------------------------
# what the fakes saw
# --------------------------------------------------------------------------------------------------------
def written_back(world: World) -> dict[str, float]:
    """Deal id → when the HubSpot fake answered the first PATCH writing that deal's tracking number
    (contracts/outbound/hubspot/deal_writeback: property ``tracking_number``)."""
    done: dict[str, float] = {}
    with world.hubspot.lock:
        patches = [
            r for r in world.hubspot.requests if r.method == "PATCH" and r.path.startswith(PATCH_PREFIX)
        ]
    for r in patches:
        if r.status is None or not 200 <= r.status < 300 or r.sent_at is None or not isinstance(r.body, dict):
            continue
        deal_id = r.path[len(PATCH_PREFIX) :]
        if (r.body.get("properties") or {}).get("tracking_number") and deal_id not in done:
            done[deal_id] = r.sent_at
    return done


def call_mix(world: World, since: float) -> dict[str, dict[str, int]]:
    """Calls per API after ``since``, by Odoo model.method or by HTTP method and path (ids masked)."""
    import re

    out: dict[str, dict[str, int]] = {}
    for name in ("hubspot", "odoo", "easypost"):
        fake = getattr(world, name)
        with fake.lock:
            reqs = [r for r in fake.requests if r.at >= since]
        mix: Counter[str] = Counter()
        for r in reqs:
            if name == "odoo" and isinstance(r.body, dict):
                args = (r.body.get("params") or {}).get("args") or []
                what = (
                    f"{args[3]}.{args[4]}"
                    if len(args) > 4
                    else str((r.body.get("params") or {}).get("method"))
                )
            else:
                what = f"{r.method} {re.sub(r'/(shp|adr|rate)_[0-9a-f]+|/[0-9]{3,}', '/{id}', r.path)}"
            mix[what] += 1
        out[name] = dict(mix.most_common())
    return out


def duplicates(world: World) -> dict[str, int]:
    """Orders per deal and purchased labels per deal beyond one, as the fakes hold them."""
    orders = Counter(
        str(o.get("client_order_ref"))
        for o in world.odoo.models.get("sale.order", {}).values()
        if o.get("client_order_ref")
    )
    labels = Counter(dict(world.easypost.buys))
    return {
        "orders": sum(orders.values()),
        "labels": sum(labels.values()),
        "duplicate_orders": sum(n - 1 for n in orders.values() if n > 1),
        "duplicate_labels": sum(n - 1 for n in labels.values() if n > 1),
    }


def wait_complete(
    world: RemoteWorld, expect: set[str], timeout_s: float, what: str, alive: Callable[[], bool]
) -> dict[str, float]:
    deadline = time.monotonic() + timeout_s
    last_log = 0.0
    done = world.done()
    while not expect <= set(done) and time.monotonic() < deadline and alive():
        time.sleep(0.5)
        done = world.done()
        if time.monotonic() - last_log > 15:
            last_log = time.monotonic()
            log(f"{what}: {len(set(done) & expect)}/{len(expect)} chains complete")
    return done


def ms(values: list[float], p: float) -> float | None:
    v = percentile(values, p)
    return None if v is None else round(v * 1000, 1)


# --------------------------------------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------------------------------------
def throughput_run(args: argparse.Namespace, rep: int, tmp: Path) -> dict[str, Any]:
    name, url = pgdb.fresh_database("ia_bench_out")
    world = RemoteWorld(args, args.chains, tmp, f"throughput{rep}")
    ours: Ours | None = None
    try:
        seeded = seed_warehouse(world, url, tmp / f"seed-{rep}")
        ours = Ours(world, url, tmp, args.pause, args.layout, budget_s=args.settle + 600)
        ours.start()
        log(
            f"rep {rep}: {len(world.deals)} deals seeded ({seeded}); posting won webhooks at {args.rate or 'max'}/s"
        )
        [sent] = post_won([(ours.base_url, ours.secret)], world.deals, args.rate, on_start=world.start)
        accepted = {s.deal_id for s in sent if s.status.startswith("2")}
        wait_complete(world, accepted, args.settle, f"rep {rep}", ours.alive)
        reports = ours.finish()
        ours = None
    finally:
        if ours is not None:
            ours.finish()
        result = world.stop()
        if not args.keep_db:
            pgdb.drop_database(name)
        else:
            log(f"kept database {name}")
    done = result.get("done") or {}
    first = min(s.at for s in sent)
    lat = sorted(done[s.deal_id] - s.at for s in sent if s.deal_id in done)
    span = (max(done.values()) - first) if done else float("nan")
    return {
        "rep": rep,
        "chains": len(world.deals),
        "accepted": len(accepted),
        "complete": len(lat),
        "statuses": dict(Counter(s.status for s in sent)),
        "offered_rate": args.rate,
        "send_s": round(max(s.at for s in sent) - first, 2),
        "span_s": round(span, 2),
        "chains_per_s": round(len(lat) / span, 2) if done else 0.0,
        "p50_ms": ms(lat, 50),
        "p95_ms": ms(lat, 95),
        "p99_ms": ms(lat, 99),
        "max_ms": round(lat[-1] * 1000, 1) if lat else None,
        "webhook_p99_ms": ms(sorted(s.seconds for s in sent if s.seconds is not None), 99),
        **{k: result.get(k) for k in ("calls", "peak_in_flight", "fake_ms_per_call", "fakes", "call_mix")},
        "workers": reports,
    }


def outage_run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    n = int(args.outage_rate * (args.outage_lead + args.outage + args.outage_tail))
    name, url = pgdb.fresh_database("ia_bench_outage")
    ours_world = RemoteWorld(args, n, tmp, "ours")
    naive_world = RemoteWorld(args, n, tmp, "naive")
    ours: Ours | None = None
    naive: subprocess.Popen[bytes] | None = None
    window = (0.0, 0.0)
    try:
        seed_warehouse(ours_world, url, tmp / "seed-outage")
        ours = Ours(ours_world, url, tmp, args.pause, args.layout, budget_s=args.outage + args.settle + 900)
        ours.start()
        naive_port = free_port()
        naive_url = f"http://{HOST}:{naive_port}"
        naive_secret = "bench-naive-" + secrets.token_hex(12)
        naive_env = {
            **os.environ,
            **naive_world.env(),
            "HUBSPOT_CLIENT_SECRET": naive_secret,
            "INTEGRATION_WEBHOOK_PUBLIC_URL": naive_url,
        }
        naive = uvicorn("outbound_naive:create_app", naive_port, naive_env, app_dir=BENCH)
        wait_healthy(naive_url, naive)

        def schedule(t0: float) -> None:
            nonlocal window
            window = (t0 + args.outage_lead, t0 + args.outage_lead + args.outage)
            for w in (ours_world, naive_world):
                w.start(t0, window)

        log(
            f"outage: {n} won webhooks at {args.outage_rate}/s to both; EasyPost down from "
            f"{args.outage_lead:g} s to {args.outage_lead + args.outage:g} s"
        )
        sent_ours, sent_naive = post_won(
            [(ours.base_url, ours.secret), (naive_url, naive_secret)],
            ours_world.deals,
            args.outage_rate,
            on_start=schedule,
        )
        log("outage: load done; waiting for our chains to complete")
        accepted = {s.deal_id for s in sent_ours if s.status.startswith("2")}
        remaining = max(0.0, window[1] - time.time())
        done_ours = wait_complete(ours_world, accepted, remaining + args.settle, "outage/ours", ours.alive)
        reports = ours.finish()
        ours = None
    finally:
        if ours is not None:
            ours.finish()
        stop(naive)
        ours_result = ours_world.stop()
        naive_result = naive_world.stop()
        pgdb.drop_database(name)
    done_ours = ours_result.get("done") or {}
    done_naive = naive_result.get("done") or {}

    def summary(
        label: str, sent: list[Sent], done: dict[str, float], result: dict[str, Any]
    ) -> dict[str, Any]:
        during = [s for s in sent if window[0] <= s.at < window[1]]
        fast = [s for s in sent if s.status.startswith("2") and s.seconds is not None and s.seconds <= 1.0]
        durations = sorted(s.seconds for s in sent if s.seconds is not None)
        return {
            "contender": label,
            "webhooks": len(sent),
            "answered_2xx_within_1s": len(fast),
            "answered_2xx_within_1s_during_outage": sum(1 for s in fast if window[0] <= s.at < window[1]),
            "sent_during_outage": len(during),
            "statuses": dict(Counter(s.status for s in sent)),
            "request_p50_ms": ms(durations, 50),
            "request_p99_ms": ms(durations, 99),
            "complete": len(done),
            "complete_won_during_outage": sum(1 for s in during if s.deal_id in done),
            "complete_after_return": sum(1 for t in done.values() if t >= window[1]),
            "last_complete_after_return_s": round(max(done.values()) - window[1], 1) if done else None,
            "fakes": result.get("fakes"),
            "fake_calls": result.get("calls"),
            "fake_ms_per_call": result.get("fake_ms_per_call"),
            # every request: seconds after the first, status, seconds to the answer, chain complete
            "requests": [
                [
                    round(s.at - sent[0].at, 2),
                    s.status,
                    None if s.seconds is None else round(s.seconds, 2),
                    s.deal_id in done,
                ]
                for s in sent
            ],
        }

    return {
        "outage_s": args.outage,
        "rate": args.outage_rate,
        "chains": n,
        "results": [
            summary("ours: receiver → queue → outbox → steps", sent_ours, done_ours, ours_result),
            summary("naive: the calls inside the webhook request", sent_naive, done_naive, naive_result),
        ],
        "workers": reports,
    }


# --------------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------------
def med(runs: list[dict[str, Any]], key: str) -> Any:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 2) if values else None


def throughput_table(runs: list[dict[str, Any]]) -> str:
    head = (
        "| run | chains | complete | chains/s | p50 ms | p95 ms | p99 ms | max ms | dup. orders | dup. labels |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows = [
        f"| {r['rep']} | {r['chains']} | {r['complete']} | {r['chains_per_s']} | {r['p50_ms']} | {r['p95_ms']} | "
        f"{r['p99_ms']} | {r['max_ms']} | {r['fakes']['duplicate_orders']} | {r['fakes']['duplicate_labels']} |"
        for r in runs
    ]
    rows.append(
        f"| **median** | | | **{med(runs, 'chains_per_s')}** | {med(runs, 'p50_ms')} | {med(runs, 'p95_ms')} | "
        f"**{med(runs, 'p99_ms')}** | {med(runs, 'max_ms')} | | |"
    )
    return "\n".join([head, *rows])


def outage_table(out: dict[str, Any]) -> str:
    head = (
        "| contender | webhooks | 2xx within 1 s | of them during the outage | statuses | request p50 / p99 ms "
        "| chains complete | won during the outage, complete | dup. orders |\n|---|---:|---:|---:|---|---|---:|---:|---:|"
    )
    rows = []
    for r in out["results"]:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
        rows.append(
            f"| {r['contender']} | {r['webhooks']} | {r['answered_2xx_within_1s']} | "
            f"{r['answered_2xx_within_1s_during_outage']} / {r['sent_during_outage']} | {statuses} | "
            f"{r['request_p50_ms']} / {r['request_p99_ms']} | {r['complete']} | "
            f"{r['complete_won_during_outage']} / {r['sent_during_outage']} | {r['fakes']['duplicate_orders']} |"
        )
    return "\n".join([head, *rows])


def bench_policies(tmp: Path) -> Path:
    """The shipped policies without API rate budgets: the fakes enforce none (their limit is calls in flight,
    as the issue's set-up asks), and the shipped budgets (e.g. Odoo 50 calls per 10 s) would cap the chain
    at what a real account allows instead of measuring the pipeline. Inherited by every worker process."""
    import yaml

    from integration_assets.policies import DEFAULT_POLICIES_FILE

    data = yaml.safe_load(DEFAULT_POLICIES_FILE.read_text())
    data["api_budget"] = {}
    path = tmp / "policies.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="throughput,outage")
    parser.add_argument("--chains", type=int, default=300, help="deals won per throughput run")
    parser.add_argument("--rate", type=float, default=25.0, help="won webhooks per second (0: all at once)")
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs; medians reported")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds each fake takes per call")
    parser.add_argument("--in-flight", type=int, default=8, help="calls each fake serves at once")
    parser.add_argument("--pause", type=float, default=0.5, help="drainer pause between drains (s)")
    parser.add_argument("--layout", choices=("processes", "threads"), default="processes",
                        help="one process per step (and the relay), or all in threads of one process")  # fmt: skip
    parser.add_argument("--settle", type=float, default=180.0, help="max wait for the last chains (s)")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds EasyPost is down")
    parser.add_argument("--outage-rate", type=float, default=5.0, help="won webhooks per second")
    parser.add_argument("--outage-lead", type=float, default=10.0, help="seconds of load before the outage")
    parser.add_argument("--outage-tail", type=float, default=10.0, help="seconds of load after it")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--keep-db", action="store_true", help="keep the bench databases for inspection")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    parser.add_argument("--_world", help=argparse.SUPPRESS)
    parser.add_argument("--steps", default="", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=600.0, help=argparse.SUPPRESS)
    parser.add_argument("--relay", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--drain", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._world:
        world_main(args._world)
        return
    if args._worker:
        worker_main(
            args._worker, [s for s in args.steps.split(",") if s], args.seconds, args.relay, args.drain
        )
        return
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    if not only <= {"throughput", "outage"} or not only:
        parser.error("--only takes throughput and/or outage")
    if not (0 < args.chains <= 5000 and 0 <= args.rate <= 1000 and 0 < args.outage <= 600):
        parser.error("--chains in (0, 5000], --rate in [0, 1000], --outage in (0, 600]")
    WORK.mkdir(parents=True, exist_ok=True)
    # This process serves every fake (two worlds in the outage scenario) from many threads: a short GIL
    # switch interval keeps one busy handler thread from delaying the others' answers by 5 ms slices.
    sys.setswitchinterval(0.0005)
    load_before = os.getloadavg()
    out: dict[str, Any] = {"benchmark": "outbound", "at": datetime.now(UTC).isoformat(), "params": {
        k: v for k, v in vars(args).items() if not k.startswith("_") and k not in ("steps", "seconds", "relay", "drain")
    }}  # fmt: skip
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        os.environ["INTEGRATION_POLICIES_FILE"] = str(bench_policies(Path(tmp)))
        if "throughput" in only:
            runs = []
            for rep in range(1, args.repeat + 1):
                r = throughput_run(args, rep, Path(tmp))
                log(
                    f"rep {rep}: {r['complete']}/{r['chains']} complete, {r['chains_per_s']} chains/s, "
                    f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, {r['fakes']}"
                )
                runs.append(r)
            out["throughput"] = runs
        if "outage" in only:
            out["outage"] = outage_run(args, Path(tmp))
    out["machine"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(
        f"\nOutbound chain, fakes at {args.latency * 1000:g} ms per call and {args.in_flight} calls in flight per API "
        f"({os.cpu_count()} CPUs, 1-min load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after)\n"
    )
    if "throughput" in out:
        print(
            f"Throughput: {args.chains} won deals per run at {args.rate or 'max'}/s, {args.repeat} run(s)\n"
        )
        print(throughput_table(out["throughput"]) + "\n")
    if "outage" in out:
        print(
            f"EasyPost down for {args.outage:g} s, {out['outage']['chains']} won webhooks at {args.outage_rate:g}/s\n"
        )
        print(outage_table(out["outage"]) + "\n")
    path = WORK / f"outbound-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    log(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
