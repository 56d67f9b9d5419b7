"""The step runner: one step's queue → the step → ledger, chain and follow-ups, exactly once in effect
(docs/ARCHITECTURE.md, "The outbound flow").

For each message, in this order (the kill points are named as the tests name them)::

    ledger ``started`` (committed) → step.run (the call to the target)
        ── kill point ``after_call``: the retry finds the row ``started`` and the step looks up first
    ONE transaction: ledger done/found/skipped + chain updates + follow-up outbox rows (+ the SQL queue's ack)
        ── kill point ``after_commit``: the redelivery meets a final ledger row: a counted duplicate, no call
    ack (when the queue cannot ack inside the transaction)

A batch is grouped by chain: a chain's messages run one after the other, in queue order, and the chains run in
parallel, at most ``policy.concurrency[target]`` calls in flight. Transient failures go back to the queue
with backoff until ``policy.attempts.max`` attempts; then, and on any terminal failure at once, the message
is dead-lettered (stage ``outbound``) in the transaction that settles its ledger row.

Queues: one per step (``open_step_queue``); the queue's own attempt limit is set above the policy's, so only
a consumer crash loop lets the queue dead-letter a message first (recorded as an outbound dead letter too).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import copy
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import sqlalchemy as sa

from integration_assets.dead_letters import store
from integration_assets.errors import TerminalError, TransientError
from integration_assets.outbound import ledger
from integration_assets.outbound.errors import (
    CHECK_ATTEMPTS,
    CHECK_BAD_INPUT,
    CHECK_CONTRACT,
    CHECK_NEEDS_REVIEW,
    CHECK_TARGET_REJECTED,
    NeedsReview,
)
from integration_assets.outbound.steps.base import OutboxMessage, Step, StepContext, StepResult, ledger_sub
from integration_assets.outbound.targets import Targets
from integration_assets.policies import OutboundPolicy, load_policies
from integration_assets.queue import Delivery, Queue, QueueDeadLetter, backoff_delay, open_queue
from integration_assets.settings import get_settings
from integration_assets.warehouse import outbox
from integration_assets.warehouse.db import begin_write

log = logging.getLogger(__name__)

KillPoint = Literal["after_call", "after_commit"]
Hook = Callable[[KillPoint, OutboxMessage], None]
QUEUE_PREFIX = "outbound."
# Order of the steps in a chain (run_all runs them in this order each round).
STEP_ORDER = (
    "odoo_order",
    "easypost_label",
    "odoo_tracking",
    "hubspot_writeback",
    "hubspot_tracking",
    "compensate",
)
# Topics that ask a step for its one write per chain generation; other topics are writes of their own.
PRIMARY_TOPICS = frozenset({"deal.won", "order.confirmed", "payment.succeeded", "label.bought"})
_LEDGER_STATUS = {
    "sent": "done",
    "updated": "done",
    "found": "found",
    "skipped": "skipped",
    "waiting": "waiting",
    "compensated": "compensated",
}
# The queue's own delivery limit (unless the URL sets one) is above any policy's (``attempts.max`` <= 100):
# the runner dead-letters at the policy limit, counted in the ledger, also when earlier attempts died without
# settling. Fixed rather than derived from the policy: a RabbitMQ queue cannot be redeclared with another
# limit, so a policy edit must not change it.
QUEUE_MAX_ATTEMPTS = 110

_extra_steps: dict[str, Step] = {}
# Calls in flight per target API in this process, across the steps that use it (policy.concurrency).
_slots: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


def _target_slots(
    target: str, policy: OutboundPolicy
) -> threading.BoundedSemaphore | contextlib.nullcontext[None]:
    try:
        limit = policy.concurrency[target]
    except KeyError:
        return contextlib.nullcontext()
    with _slots_lock:
        return _slots.setdefault((target, limit), threading.BoundedSemaphore(limit))


# -- the step registry --------------------------------------------------------------------------------------
def register_step(step: Step) -> None:
    """Make ``step`` runnable under its name (tests and the sandbox; the real steps are in ``steps.STEPS``)."""
    _extra_steps[step.name] = step


def unregister_step(name: str) -> None:
    _extra_steps.pop(name, None)


def known_steps() -> dict[str, Step]:
    """Every runnable step: ``outbound.steps.STEPS`` plus the registered ones."""
    from integration_assets.outbound import steps as steps_pkg

    found: dict[str, Step] = dict(getattr(steps_pkg, "STEPS", {}) or {})
    found.update(_extra_steps)
    return found


def get_step(name: str) -> Step:
    steps = known_steps()
    if name not in steps:
        raise KeyError(f"no outbound step {name!r} (known: {sorted(steps)})")
    return steps[name]


def message_ledger_key(step: Step, msg: OutboxMessage) -> str:
    """The ledger key of ``msg``'s write: one per chain generation for the primary topics (a label asked for
    by ``order.confirmed`` and again by ``payment.succeeded`` is one write), one per message otherwise."""
    custom = getattr(step, "ledger_sub", None)
    if callable(custom) or msg.topic in PRIMARY_TOPICS:
        return ledger.ledger_key(step.name, msg.chain_id, ledger_sub(step, msg))
    tail = msg.key.removeprefix(msg.topic + ":").removeprefix(msg.chain_id).lstrip(":")
    return ledger.ledger_key(step.name, msg.chain_id, f"{msg.topic}:{tail}" if tail else msg.topic)


# -- queues -------------------------------------------------------------------------------------------------
def step_queue_url(step: str, url: str | None = None, *, max_attempts: int | None = None) -> str:
    """The queue URL of ``step``: ``sql?name=outbound.<step>`` or the AMQP URL with prefix
    ``<prefix>.outbound.<step>`` (each step its own queues, retries and dead-letter queue)."""
    url = (url or get_settings().queue_url or "sql").strip()
    parts = urlsplit(url)
    pairs = dict(parse_qsl(parts.query, keep_blank_values=True))
    if max_attempts is not None:
        pairs["max_attempts"] = str(max_attempts)
    pairs.setdefault("max_attempts", str(QUEUE_MAX_ATTEMPTS))
    if parts.scheme in ("amqp", "amqps"):
        pairs["prefix"] = f"{pairs.get('prefix', 'integration')}.{QUEUE_PREFIX}{step}"
        return urlunsplit(parts._replace(query=urlencode(pairs)))
    pairs["name"] = f"{QUEUE_PREFIX}{step}"
    return "sql?" + urlencode(pairs)


def open_step_queue(
    step: str,
    url: str | None = None,
    *,
    engine: sa.Engine | None = None,
) -> Queue:
    """The queue of ``step`` (see ``step_queue_url``); its dead letters are outbound dead letters."""
    warehouse_url = engine.url.render_as_string(hide_password=False) if engine is not None else None
    return open_queue(
        step_queue_url(step, url),
        warehouse_url=warehouse_url,
        dead_letter_sink=_queue_dead_letters,
    )


def _queue_dead_letters(conn: sa.Connection, items: Sequence[QueueDeadLetter]) -> None:
    """The queue's own dead letters (a consumer crash loop): recorded as outbound dead letters, so
    ``dlq replay`` runs their step again."""
    steps = known_steps()
    rows = []
    for item in items:
        try:
            msg = OutboxMessage.from_json(item.body)
        except (ValueError, KeyError, TypeError):
            store.write_event_dead_letters(conn, [item])  # not an outbox message: kept as it came
            continue
        step = steps.get(msg.step)
        rows.append(
            _dead_letter_row(
                msg,
                step_target=step.target if step else "outbound",
                key=message_ledger_key(step, msg) if step else f"{msg.step}:{msg.key}",
                check_name=item.check_name,
                reason=item.reason,
                field_name=None,
                contract=None,
                attempts=item.attempts,
            )
        )
    store.write_outbound_dead_letters(conn, rows)


# -- reports ------------------------------------------------------------------------------------------------
@dataclass
class StepReport:
    """What one run of a step did (the Dagster asset's metadata and the CLI's summary)."""

    step: str
    received: int = 0
    sent: int = 0
    found: int = 0
    skipped: int = 0
    updated: int = 0
    flagged: int = 0
    waiting: int = 0
    dead_lettered: int = 0
    retried: int = 0
    duplicates: int = 0  # redeliveries of a write already in the ledger: acked, nothing called
    released: int = 0  # given back untouched (dry run, or behind a retried message of the same chain)
    deferred: int = 0  # given back because another consumer holds the write's lease (counted in released)
    latency_ms: list[int] = field(default_factory=list)
    previews: list[dict[str, Any]] = field(default_factory=list)  # dry run: what each message would send
    errors: list[dict[str, Any]] = field(default_factory=list)  # ids and reasons of what failed

    def add(self, other: StepReport) -> None:
        for name in (
            "received", "sent", "found", "skipped", "updated", "flagged", "waiting", "dead_lettered",
            "retried", "duplicates", "released", "deferred",
        ):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latency_ms.extend(other.latency_ms)
        self.previews.extend(other.previews)
        self.errors.extend(other.errors)

    @property
    def processed(self) -> int:
        return self.received - self.released

    def as_dict(self) -> dict[str, Any]:
        lat = sorted(self.latency_ms)
        return {
            "step": self.step,
            "received": self.received,
            "sent": self.sent,
            "found": self.found,
            "skipped": self.skipped,
            "updated": self.updated,
            "flagged": self.flagged,
            "waiting": self.waiting,
            "dead_lettered": self.dead_lettered,
            "retried": self.retried,
            "duplicates": self.duplicates,
            "released": self.released,
            "deferred": self.deferred,
            "latency_p50_ms": lat[len(lat) // 2] if lat else None,
            "latency_max_ms": lat[-1] if lat else None,
        }


# -- one message --------------------------------------------------------------------------------------------
@dataclass
class _Settle:
    delivery: Delivery
    action: Literal["ack", "done", "retry", "release"]  # done: acked inside the transaction
    reason: str = ""
    delay_s: float = 0.0


def _now() -> datetime:
    return datetime.now(UTC)


def _dead_letter_row(
    msg: OutboxMessage,
    *,
    step_target: str,
    key: str,
    check_name: str,
    reason: str,
    field_name: str | None,
    contract: str | None,
    attempts: int,
) -> dict[str, Any]:
    return {
        "ledger_key": key,
        "source_system": step_target,
        "entity": msg.step,
        "natural_key": msg.chain_id,
        "check_name": check_name,
        "reason": reason,
        "column_name": field_name,
        "contract_version": contract,
        "raw_record": msg.to_json(),
        "attempts": attempts,
        "details": {"outbox_key": msg.key, "topic": msg.topic, "ledger_key": key},
    }


def _classify(exc: TerminalError) -> tuple[str, str | None, str | None]:
    """check_name, field and contract version of a terminal failure (the connectors' errors carry
    ``.field``; a contract violation ``.contract``; the outbound errors ``.check_name``)."""
    check = getattr(exc, "check_name", None)
    contract = getattr(exc, "contract", None) or getattr(exc, "contract_version", None)
    if not check:
        check = CHECK_CONTRACT if type(exc).__name__ == "OutboundContractViolation" else CHECK_TARGET_REJECTED
    field_name = getattr(exc, "field", None)
    return str(check), (str(field_name) if field_name else None), (str(contract) if contract else None)


class _Runner:
    def __init__(
        self,
        engine: sa.Engine,
        step: Step,
        queue: Queue,
        ctx: StepContext,
        *,
        tx_ack: bool,
        hook: Hook | None,
        report: StepReport,
        lease_s: float = 0.0,
    ) -> None:
        self.lease_s = lease_s
        self.engine = engine
        self.step = step
        self.queue = queue
        self.ctx = ctx
        self.tx_ack = tx_ack
        self.hook = hook
        self.report = report
        self.policy = ctx.policy

    def chain(self, deliveries: list[Delivery]) -> tuple[list[_Settle], StepReport]:
        """One chain's messages, in order; after a message that must wait, the rest wait too. Counts go to
        a report of the chain's own (chains run in parallel threads), added up by the caller."""
        worker = copy.copy(self)
        worker.report = StepReport(self.step.name)
        out: list[_Settle] = []
        for i, d in enumerate(deliveries):
            s = worker.one(d)
            out.append(s)
            if s.action in ("retry", "release"):
                out.extend(_Settle(x, "release") for x in deliveries[i + 1 :])
                break
        return out, worker.report

    def one(self, d: Delivery) -> _Settle:
        try:
            msg = OutboxMessage.from_json(d.message.body)
        except (ValueError, KeyError, TypeError) as exc:
            bad = OutboxMessage(d.message.id, d.message.event_type, self.step.name, "?", {})
            return self._dead_letter(d, bad, f"{self.step.name}:?:{d.message.id}", CHECK_BAD_INPUT,
                                     f"not an outbox message: {exc}", None, None, 1, review=False)  # fmt: skip
        key = message_ledger_key(self.step, msg)
        if self.ctx.dry_run:
            return self._dry(d, msg, key)
        with begin_write(self.engine) as conn:
            row = ledger.get(conn, key, for_update=True)
            if row is not None and row.status in (*ledger.FINAL, "dead_lettered"):
                # Done before (a redelivery after the commit, or the relay published again): no call.
                self.report.duplicates += 1
                if self.tx_ack:
                    self.queue.ack([d], connection=conn)
                    return _Settle(d, "done")
                return _Settle(d, "ack")
            if row is not None and row.status == "started" and self.lease_s > 0 and row.last_attempt_at:
                age = (_now() - row.last_attempt_at).total_seconds()
                if 0 <= age < self.lease_s:
                    # Another consumer started this write moments ago and may be calling the target now: a
                    # second call could miss the first one's object in its lookup. Come back when its lease
                    # is over (not an attempt of this message).
                    self.report.deferred += 1
                    return _Settle(d, "release", delay_s=self.lease_s - age)
            started = ledger.start(
                conn, key, step=self.step.name, chain_id=msg.chain_id, target_system=self.step.target
            )
            ledger.ensure_chain(conn, msg.chain_id, generation=msg.generation)
        ctx = replace(self.ctx, fresh_keys=frozenset({key}) if row is None else frozenset())
        attempt = started.attempts
        if attempt > self.policy.attempts.max:
            # Earlier attempts died before settling (a crash loop): no more calls.
            return self._dead_letter(
                d, msg, key, "delivery_limit",
                f"{attempt - 1} attempt(s) started without settling (crash loop?)", None, None, attempt,
                review=False,
            )  # fmt: skip
        try:
            with _target_slots(self.step.target, self.policy):
                result = self.step.run(ctx, msg, attempt)
        except TransientError as exc:
            if attempt >= self.policy.attempts.max:
                return self._dead_letter(
                    d, msg, key, CHECK_ATTEMPTS, f"gave up after {attempt} attempt(s): {exc}",
                    getattr(exc, "field", None), None, attempt, review=False,
                )  # fmt: skip
            self.report.retried += 1
            self.report.errors.append(
                {"chain_id": msg.chain_id, "kind": "transient", "reason": str(exc)[:500]}
            )
            delay = backoff_delay(
                attempt,
                base_s=self.policy.attempts.backoff_base.total_seconds(),
                cap_s=self.policy.attempts.backoff_cap.total_seconds(),
            )
            return _Settle(d, "retry", str(exc), delay)
        except TerminalError as exc:
            check, field_name, contract = _classify(exc)
            return self._dead_letter(
                d, msg, key, check, str(getattr(exc, "reason", None) or exc), field_name, contract, attempt,
                review=isinstance(exc, NeedsReview) and check == CHECK_NEEDS_REVIEW,
            )  # fmt: skip
        if self.hook:
            self.hook("after_call", msg)
        if result.outcome == "flagged":
            return self._dead_letter(
                d, msg, key, result.check_name or CHECK_NEEDS_REVIEW, result.reason or "flagged for review",
                result.field_name, result.contract_version, attempt, review=True, result=result,
            )  # fmt: skip
        status = _LEDGER_STATUS[result.outcome]
        now = _now()
        with begin_write(self.engine) as conn:
            ledger.finish(
                conn,
                key,
                status,
                target_id=result.target_id,
                target_ref=result.target_ref,
                contract_version=result.contract_version,
                detail=result.detail or None,
                now=now,
            )
            self._apply(conn, msg, result)
            if self.tx_ack:
                self.queue.ack([d], connection=conn)
        if self.hook:
            self.hook("after_commit", msg)
        setattr(self.report, result.outcome, getattr(self.report, result.outcome) + 1)
        if status in ledger.FINAL and started.first_attempt_at is not None:
            self.report.latency_ms.append(int((now - started.first_attempt_at).total_seconds() * 1000))
        return _Settle(d, "done" if self.tx_ack else "ack")

    def _apply(self, conn: sa.Connection, msg: OutboxMessage, result: StepResult) -> None:
        if result.chain_updates:
            ledger.update_chain(conn, msg.chain_id, result.chain_updates, generation=msg.generation)
        if result.follow_ups:
            outbox.enqueue(
                conn,
                [outbox.OutboxRow(key, topic, step, msg.chain_id, payload)
                 for topic, step, key, payload in result.follow_ups],
            )  # fmt: skip

    def _dead_letter(
        self,
        d: Delivery,
        msg: OutboxMessage,
        key: str,
        check: str,
        reason: str,
        field_name: str | None,
        contract: str | None,
        attempts: int,
        *,
        review: bool,
        result: StepResult | None = None,
    ) -> _Settle:
        """Permanent: the dead letter, the ledger row and the chain's status in one transaction (with the
        ack when the queue can), then the ack."""
        with begin_write(self.engine) as conn:
            store.write_outbound_dead_letters(
                conn,
                [_dead_letter_row(msg, step_target=self.step.target, key=key, check_name=check, reason=reason,
                                  field_name=field_name, contract=contract, attempts=attempts)],
            )  # fmt: skip
            if ledger.get(conn, key) is not None:
                ledger.finish(conn, key, "dead_lettered", contract_version=contract)
            if result is not None:
                self._apply(conn, msg, result)
            if msg.chain_id != "?":
                ledger.update_chain(
                    conn, msg.chain_id, {"status": "review" if review else "dead_lettered"},
                    generation=msg.generation,
                )  # fmt: skip
            if self.tx_ack:
                self.queue.ack([d], connection=conn)
        if result is not None:
            self.report.flagged += 1
        else:
            self.report.dead_lettered += 1
        self.report.errors.append(
            {"chain_id": msg.chain_id, "kind": "dead_lettered", "check": check, "field": field_name,
             "reason": reason[:500]}
        )  # fmt: skip
        return _Settle(d, "done" if self.tx_ack else "ack")

    def _dry(self, d: Delivery, msg: OutboxMessage, key: str) -> _Settle:
        """Plan and render only: the step makes no write call; nothing is written, the message goes back."""
        try:
            result = self.step.run(self.ctx, msg, 1)
        except (TransientError, TerminalError) as exc:
            kind = "transient" if isinstance(exc, TransientError) else "terminal"
            self.report.errors.append({"chain_id": msg.chain_id, "kind": kind, "reason": str(exc)[:500]})
            return _Settle(d, "release")
        self.report.previews.append(
            {
                "step": self.step.name,
                "chain_id": msg.chain_id,
                "key": key,
                "outcome": result.outcome,
                "contract_version": result.contract_version,
                "payloads": result.preview,
            }
        )
        return _Settle(d, "release")


def _by_chain(deliveries: Iterable[Delivery]) -> list[list[Delivery]]:
    """Deliveries grouped by chain, each group in queue order (the chain id is in a message header)."""
    groups: dict[str, list[Delivery]] = {}
    for d in deliveries:
        groups.setdefault(_chain_of(d), []).append(d)
    return list(groups.values())


def _settle(queue: Queue, settles: Sequence[_Settle], report: StepReport) -> None:
    acks = [s.delivery for s in settles if s.action == "ack"]
    if acks:
        queue.ack(acks)
    by_delay: dict[float, list[Delivery]] = {}
    for s in settles:
        if s.action == "release":
            by_delay.setdefault(round(s.delay_s, 1), []).append(s.delivery)
    for delay, releases in by_delay.items():
        queue.release(releases, delay)
        report.released += len(releases)
    for s in settles:
        if s.action == "retry":
            queue.retry(s.delivery, s.reason, s.delay_s)


# -- entry points -------------------------------------------------------------------------------------------
def run_step(
    engine: sa.Engine,
    step: str,
    *,
    queue_url: str | None = None,
    max_messages: int = 1000,
    dry_run: bool = False,
    targets: Targets | None = None,
    wait_s: float = 0.0,
    policy: OutboundPolicy | None = None,
    queue: Queue | None = None,
    hook: Hook | None = None,
    transactional_ack: bool = True,
    visibility_timeout_s: float = 300.0,
    now: Callable[[], datetime] = _now,
    lease_s: float = 0.0,
) -> StepReport:
    """Consume up to ``max_messages`` messages of ``step``'s queue (waiting up to ``wait_s`` for the first).

    ``queue``: an open queue to use instead of ``open_step_queue``. ``hook``: called at the kill points
    (tests raise from it to simulate a crash; the exception propagates and nothing more is settled).
    ``transactional_ack=False`` acks after the commit even when the SQL queue could ack inside it.
    ``lease_s`` (0: off): a write another consumer started less than this ago is left to it (the message
    comes back after the lease), so two consumers of one step never call the target for one write at once
    (RabbitMQ can hand two copies to two consumers); a crashed attempt is then retried once its lease is
    over. Off by default: one consumer per step (the SQL queue stores a queued key once) needs none."""
    the_step = get_step(step)
    policy = policy or load_policies().outbound
    targets = targets or Targets()
    report = StepReport(step)
    ctx = StepContext(engine=engine, targets=targets, policy=policy, dry_run=dry_run, now=now)
    own = queue is None
    q = queue if queue is not None else open_step_queue(step, queue_url, engine=engine)
    tx_ack = transactional_ack and not dry_run and q.supports_transactional_ack(engine)
    runner = _Runner(engine, the_step, q, ctx, tx_ack=tx_ack, hook=hook, report=report, lease_s=lease_s)
    workers = (
        max(1, policy.concurrency[the_step.target])
        if the_step.target in ("odoo", "easypost", "hubspot")
        else 8
    )
    try:
        if dry_run:
            # Released messages are visible again at once: one batch shows each once.
            batch = q.receive_batch(min(max_messages, 500), visibility_timeout_s, wait_s=wait_s)
            report.received += len(batch)
            for group in _by_chain(batch):
                chain_settles, chain_report = runner.chain(group)
                report.add(chain_report)
                _settle(q, chain_settles, report)
        else:
            _stream(runner, q, report, workers, max_messages, wait_s, visibility_timeout_s)
            # What the broker dead-lettered on its own (a consumer crash loop) into the warehouse, as outbound
            # dead letters (a no-op for the SQL queue, which records them directly).
            q.drain_dead_letters()
    finally:
        if own:
            q.close()
    if report.received:
        log.info("outbound step %s: %s", step, report.as_dict())
    return report


def _stream(
    runner: _Runner,
    q: Queue,
    report: StepReport,
    workers: int,
    max_messages: int,
    wait_s: float,
    visibility_timeout_s: float,
) -> None:
    """Keep up to ``workers`` chains running; receive more as slots free, settle each chain as it ends.

    Only this thread talks to the queue (a RabbitMQ channel is not thread-safe); the workers write the
    warehouse (and ack inside their transaction when the SQL queue can). A message for a chain that is
    running waits for it: a chain's messages run one after the other, in queue order."""
    running: dict[cf.Future[tuple[list[_Settle], StepReport]], str] = {}
    busy: set[str] = set()
    waiting: dict[str, list[Delivery]] = {}
    first = True
    drained = False
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:

        def submit(chain: str, group: list[Delivery]) -> None:
            busy.add(chain)
            running[pool.submit(runner.chain, group)] = chain

        while True:
            room = workers - len(running)
            if room > 0 and not drained and report.received < max_messages:
                want = min(max_messages - report.received, max(room * 2, 16))
                if running:  # take what is there now: chains are waiting to be settled
                    batch = q.receive(want, visibility_timeout_s, wait_s=0.0)
                else:
                    batch = q.receive_batch(want, visibility_timeout_s, wait_s=wait_s if first else 0.0)
                first = False
                report.received += len(batch)
                if not batch and not running and not waiting:
                    break
                drained = not batch
                for group in _by_chain(batch):
                    chain = _chain_of(group[0])
                    if chain in busy:
                        waiting.setdefault(chain, []).extend(group)
                    else:
                        submit(chain, group)
            if not running:
                if waiting:  # pragma: no cover - every waiting chain has one running
                    chain, group = waiting.popitem()
                    submit(chain, group)
                    continue
                if drained or report.received >= max_messages:
                    break
                continue
            done, _ = cf.wait(list(running), timeout=1.0 if drained else 0.05, return_when=cf.FIRST_COMPLETED)
            if not done:
                q.keepalive()  # AMQP heartbeats while the steps call their targets
                continue
            for f in done:
                chain = running.pop(f)
                busy.discard(chain)
                chain_settles, chain_report = f.result()  # a crash in a worker propagates here
                report.add(chain_report)
                _settle(q, chain_settles, report)
                later = waiting.pop(chain, [])
                if later:
                    if any(s.action in ("retry", "release") for s in chain_settles):
                        _settle(q, [_Settle(d, "release") for d in later], report)  # keep the order
                    else:
                        submit(chain, later)
                drained = False  # a slot is free: look for more


def _chain_of(d: Delivery) -> str:
    return d.message.headers.get("x-chain-id") or d.message.id


def run_message(
    engine: sa.Engine,
    msg: OutboxMessage,
    *,
    targets: Targets | None = None,
    policy: OutboundPolicy | None = None,
    dry_run: bool = False,
) -> StepReport:
    """Run ``msg``'s step once, outside any queue (a dead-letter replay): the same ledger, chain and
    dead-letter rules as a delivery from the queue (``dry_run``: plan and render only, write nothing)."""
    from integration_assets.queue.base import Message

    the_step = get_step(msg.step)
    policy = policy or load_policies().outbound
    report = StepReport(msg.step)
    ctx = StepContext(engine=engine, targets=targets or Targets(), policy=policy, dry_run=dry_run, now=_now)
    runner = _Runner(engine, the_step, _NoQueue(), ctx, tx_ack=False, hook=None, report=report)
    message = Message(
        id=msg.key[:255],
        source="outbound",
        event_type=msg.topic,
        body=msg.to_json().encode(),
        headers={"x-chain-id": msg.chain_id},
    )
    report.received = 1
    s = runner.one(Delivery(message, redelivered=True, receipt=None))
    if s.action == "retry":
        report.errors.append({"chain_id": msg.chain_id, "kind": "transient", "reason": s.reason})
    return report


class _NoQueue(Queue):
    """The queue of a message that came from no queue (a replay): settling it is a no-op."""

    backend = "none"
    name = "none"
    max_attempts = 1

    def publish_many(self, messages: Sequence[Any]) -> None:  # pragma: no cover - never published to
        raise NotImplementedError

    def receive(
        self, max_messages: int = 100, visibility_timeout_s: float = 300.0, *, wait_s: float = 0.0
    ) -> list[Delivery]:
        return []

    def ack(self, deliveries: Sequence[Delivery], *, connection: sa.Connection | None = None) -> None:
        return None

    def retry(self, delivery: Delivery, reason: str, delay_s: float | None = None) -> Literal["retried"]:
        return "retried"

    def release(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        return None

    def dead_letter(self, delivery: Delivery, reason: str, check_name: str) -> None:
        return None

    def depth(self) -> int:
        return 0

    def oldest_age_seconds(self) -> float | None:
        return 0.0

    def close(self) -> None:
        return None


def run_all(
    engine: sa.Engine,
    *,
    queue_url: str | None = None,
    dry_run: bool = False,
    targets: Targets | None = None,
    rounds_until_idle: bool = True,
    policy: OutboundPolicy | None = None,
    steps: Sequence[str] | None = None,
    max_rounds: int = 50,
) -> dict[str, StepReport]:
    """Relay the outbox, then run every step, round after round until a round does nothing (a step's
    follow-ups are the next step's messages), or once with ``rounds_until_idle=False``."""
    from integration_assets.outbound.relay import relay

    policy = policy or load_policies().outbound
    names = list(steps) if steps is not None else _ordered(known_steps())
    targets = targets or Targets()
    total = {n: StepReport(n) for n in names}
    for _ in range(max_rounds):
        if not dry_run:
            relay(engine, queue_url=queue_url)
        busy = False
        for name in names:
            r = run_step(engine, name, queue_url=queue_url, dry_run=dry_run, targets=targets, policy=policy)
            total[name].add(r)
            busy = busy or r.processed > 0
        if not rounds_until_idle or not busy or dry_run:
            break
        time.sleep(0)  # let other threads (a receiver, the fakes) run between rounds
    return total


def _ordered(steps: dict[str, Step]) -> list[str]:
    return [*[n for n in STEP_ORDER if n in steps], *sorted(n for n in steps if n not in STEP_ORDER)]
