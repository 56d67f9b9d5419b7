"""Quality, alerting and outbound policy, loaded from ``policies.yaml`` (or the file INTEGRATION_POLICIES_FILE names).

One place for per-source freshness windows, volume / quarantine / dead-letter thresholds, check severities,
blocking flags, runbook lines, sensor intervals, the outbound chain's choices (``outbound:``), the API request
budgets (``api_budget:``) and the pull partitions (``partitions:``). Validated strictly on load (unknown keys, bad durations,
warn >= fail are errors), so a typo cannot silently switch a threshold off. Plain Python: no Dagster import.
"""

from __future__ import annotations

import functools
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from integration_assets.errors import TerminalError
from integration_assets.settings import get_settings

DEFAULT_POLICIES_FILE = Path(__file__).resolve().parent / "policies.yaml"

CheckSeverity = Literal["WARN", "ERROR"]
CheckName = Literal[
    "volume",
    "quarantine_rate",
    "dead_letter_backlog",
    "drift",
    "keys",
    "referential_integrity",
    "gx_suite",
    "reconcile_deals_orders",
    "reconcile_customers_companies",
    "reconcile_invoices_payments",
    "outbound_backlog",
    "outbound_stuck_chains",
    "outbound_reconciliation",
]

MIN_EVENT_LEDGER_RETENTION = timedelta(days=7)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class PolicyError(TerminalError):
    """The policies file is missing or invalid."""


def parse_duration(value: Any) -> timedelta:
    """``"90s"``, ``"30m"``, ``"26h"``, ``"7d"`` (or a number of seconds) as a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration like 30s, 15m, 26h or 7d")
    return timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})


# A duration field: "90s", "30m", "26h", "7d" (or seconds) in the YAML, a timedelta in Python.
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def format_duration(td: timedelta) -> str:
    """The shortest exact ``<n><unit>`` for a timedelta (for messages)."""
    seconds = int(td.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def human_age(td: timedelta) -> str:
    """``3d 4h``, ``2h 5m``, ``42s``: the two largest units."""
    seconds = max(0, int(td.total_seconds()))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FreshnessWindow(_Strict):
    """Time-window freshness: WARN after ``warn`` without a materialization, FAIL after ``fail``.

    Not ``dagster.FreshnessPolicy``: ``checks/freshness.py`` turns a window into one."""

    fail: Duration
    warn: Duration | None = None

    @model_validator(mode="after")
    def _coherent(self) -> FreshnessWindow:
        # dagster: "fail_window cannot be less than 1 minute", and warn must be below fail.
        if self.fail < timedelta(minutes=1) or (self.warn is not None and self.warn < timedelta(minutes=1)):
            raise ValueError("freshness windows must be at least 1 minute (a Dagster constraint)")
        if self.warn is not None and self.warn >= self.fail:
            raise ValueError(
                f"freshness warn ({format_duration(self.warn)}) must be shorter than fail "
                f"({format_duration(self.fail)})"
            )
        return self


class VolumePolicy(_Strict):
    history: int = Field(default=10, ge=1)
    min_history: int = Field(default=3, ge=1)
    drop_below: float = Field(default=0.5, gt=0, lt=1)
    spike_above: float = Field(default=3.0, gt=1)
    kinds: tuple[str, ...] = ("file",)


class QuarantinePolicy(_Strict):
    latest_loads: int = Field(default=1, ge=1)
    warn_rate: float = Field(default=0.02, ge=0, le=1)
    error_rate: float = Field(default=0.20, ge=0, le=1)

    @model_validator(mode="after")
    def _order(self) -> QuarantinePolicy:
        if self.error_rate < self.warn_rate:
            raise ValueError("quarantine error_rate must be >= warn_rate")
        return self


class DeadLetterPolicy(_Strict):
    pending_warn: int = Field(default=100, ge=0)
    pending_error: int = Field(default=1000, ge=0)
    oldest_warn: Duration = timedelta(days=2)
    oldest_error: Duration = timedelta(days=7)


class EntityPolicy(_Strict):
    """The effective thresholds of one source entity (defaults < source < entity, already merged)."""

    freshness: FreshnessWindow
    volume: VolumePolicy = VolumePolicy()
    quarantine: QuarantinePolicy = QuarantinePolicy()
    dead_letters: DeadLetterPolicy = DeadLetterPolicy()


class CheckPolicy(_Strict):
    severity: CheckSeverity = "WARN"
    zero_rows_severity: CheckSeverity | None = None  # volume only
    blocking: bool = False
    runbook: str = ""

    @model_validator(mode="after")
    def _blocking_needs_error(self) -> CheckPolicy:
        if self.blocking and self.severity != "ERROR":
            raise ValueError("a blocking check must have severity ERROR (Dagster never blocks on WARN)")
        return self


class TableIntegrity(_Strict):
    required: tuple[str, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()


class Reference(_Strict):
    table: str
    column: str
    parent: str
    severity: CheckSeverity = "WARN"
    # The parent's source system when it differs from the child's (a Stripe payment naming an Odoo order).
    parent_system: str | None = None

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}->{self.parent}"


class IntegrityPolicy(_Strict):
    tables: dict[str, TableIntegrity] = Field(default_factory=dict)
    references: tuple[Reference, ...] = ()

    def for_table(self, table: str) -> TableIntegrity:
        return self.tables.get(table, TableIntegrity())

    def references_from(self, table: str) -> list[Reference]:
        return [r for r in self.references if r.table == table]


class DealsOrdersPolicy(_Strict):
    confirmed_states: tuple[str, ...] = ("sale", "done")


class CustomersCompaniesPolicy(_Strict):
    require_link_for_every_company: bool = False


class InvoicesPaymentsPolicy(_Strict):
    payments_table: str = "payments"
    amount_column: str = "amount"
    currency_column: str = "currency"
    status_column: str = "status"
    succeeded_values: tuple[str, ...] = ("succeeded",)
    date_column: str = "created_at"
    amount_in_minor_units: bool = False
    # column -> accepted values, e.g. {object_type: [charge]} so a PaymentIntent and its Charge count once
    filters: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # Succeeded rows matching these are money going back (Stripe Refunds): subtracted on their day.
    refund_filters: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    invoice_move_types: tuple[str, ...] = ("out_invoice",)
    credit_move_types: tuple[str, ...] = ()  # posted credit notes (out_refund): subtracted from the invoices
    tolerance: float = Field(default=0.01, ge=0)
    lookback: Duration = timedelta(days=90)


class ReconciliationPolicy(_Strict):
    deals_orders: DealsOrdersPolicy = DealsOrdersPolicy()
    customers_companies: CustomersCompaniesPolicy = CustomersCompaniesPolicy()
    invoices_payments: InvoicesPaymentsPolicy = InvoicesPaymentsPolicy()


class SensorIntervals(_Strict):
    check_alerts: Duration = timedelta(seconds=60)
    freshness_alerts: Duration = timedelta(seconds=30)
    run_failure_alerts: Duration = timedelta(seconds=30)
    dead_letter_growth: Duration = timedelta(seconds=120)
    connector_http_errors: Duration = timedelta(seconds=60)

    def seconds(self, name: str) -> int:
        return max(1, int(getattr(self, name).total_seconds()))


class Runbooks(_Strict):
    freshness: str = ""
    run_failure: str = ""
    dead_letter_growth: str = ""
    connector_http_errors: str = ""


class HttpErrorPolicy(_Strict):
    window: Duration = timedelta(minutes=10)
    min_errors: int = Field(default=10, ge=1)
    error_rate: float = Field(default=0.5, gt=0, le=1)
    min_minutes: int = Field(default=3, ge=1)
    clear_rate: float = Field(default=0.1, ge=0, le=1)
    retention: Duration = timedelta(days=7)


class RetentionPolicy(_Strict):
    """How long bookkeeping rows stay (the ``housekeeping`` job and ``db prune`` remove older ones)."""

    # The event-id ledger: a redelivery older than this is no longer recognised as a duplicate (the
    # stale-version guard still keeps it from changing anything). Must outlast every provider's retries.
    processed_events: Duration = timedelta(days=90)
    # Replayed or discarded dead letters (raw records, possibly personal data). Pending ones always stay.
    settled_dead_letters: Duration = timedelta(days=180)

    @model_validator(mode="after")
    def _floors(self) -> RetentionPolicy:
        if self.processed_events < MIN_EVENT_LEDGER_RETENTION:
            raise ValueError(
                f"retention.processed_events must be at least {format_duration(MIN_EVENT_LEDGER_RETENTION)}: "
                "providers redeliver for days (Stripe for up to 3), and a redelivery must still be a duplicate"
            )
        if self.settled_dead_letters < timedelta(days=1):
            raise ValueError("retention.settled_dead_letters must be at least 1d")
        return self


class EventsPolicy(_Strict):
    """Webhook event types a team does not need: per source, glob patterns (``fnmatch``, case-sensitive)
    matched against the event's type (Stripe ``type``, EasyPost ``description``, HubSpot
    ``subscriptionType``, a generic HubSpot ``object.*`` event also under its legacy name, e.g.
    ``contact.creation``). Matching events are recorded as ``ignored`` in ``processed_events`` (counted,
    listed by ``integration-assets status``) instead of being dead-lettered as unknown."""

    # Keyed by provider name; that the provider exists is checked where the registry is known
    # (``events.routing.ignore_patterns``): policies sit below the providers.
    ignore: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _patterns(self) -> EventsPolicy:
        for source, patterns in self.ignore.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", source):
                raise ValueError(f"events.ignore: {source!r} is not a provider name")
            for pattern in patterns:
                if not pattern or len(pattern) > 128 or pattern.strip() != pattern:
                    raise ValueError(f"events.ignore.{source}: {pattern!r} is not an event type pattern")
        return self


def _text_keys(value: Any) -> Any:
    # YAML reads an unquoted id or SKU (12345: 7) as a number; the maps are keyed by the text HubSpot sends.
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    return value


def _text_map(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    return value


class RateChoice(_Strict):
    """Which EasyPost rate the label step buys: the cheapest, or a named carrier and service."""

    choose: Literal["cheapest", "named"] = "cheapest"
    carrier: str | None = None
    service: str | None = None

    @model_validator(mode="after")
    def _named_needs_both(self) -> RateChoice:
        if self.choose == "named" and not (self.carrier and self.service):
            raise ValueError("outbound.rate: choose named needs carrier and service (e.g. USPS, Priority)")
        if self.choose == "cheapest" and (self.carrier or self.service):
            raise ValueError("outbound.rate: carrier/service only apply to choose: named")
        return self


class Parcel(_Strict):
    """EasyPost parcel defaults: inches and ounces, as the API takes them."""

    length: float = Field(default=10, gt=0)
    width: float = Field(default=8, gt=0)
    height: float = Field(default=4, gt=0)
    weight: float = Field(default=16, gt=0)


class FromAddress(_Strict):
    """The shipper's address on every label (EasyPost address fields)."""

    name: str | None = None
    company: str | None = None
    street1: str = Field(min_length=1)
    street2: str | None = None
    city: str = Field(min_length=1)
    state: str | None = None
    zip: str = Field(min_length=1)
    country: str = Field(default="US", min_length=2, max_length=2)
    phone: str | None = None
    email: str | None = None

    @model_validator(mode="after")
    def _who(self) -> FromAddress:
        if not (self.name or self.company):
            raise ValueError("outbound.from_address needs a name or a company")
        return self


# The sandbox shipper (EasyPost's documented example address): a policy file without ``outbound:`` still loads.
_SANDBOX_FROM = FromAddress(
    company="Integration Assets Warehouse",
    street1="417 Montgomery Street",
    street2="Floor 5",
    city="San Francisco",
    state="CA",
    zip="94104",
    country="US",
    phone="4155555555",
)


class OutboundConcurrency(_Strict):
    """Calls in flight per external API (``policy.concurrency["odoo"]`` or ``.odoo``)."""

    odoo: int = Field(default=8, ge=1, le=64)
    easypost: int = Field(default=8, ge=1, le=64)
    hubspot: int = Field(default=8, ge=1, le=64)

    def __getitem__(self, target: str) -> int:
        if target not in type(self).model_fields:
            raise KeyError(target)
        return int(getattr(self, target))


class OutboundAttempts(_Strict):
    """Transient failures retry with exponential backoff until ``max`` attempts, then dead-letter."""

    max: int = Field(default=10, ge=1, le=100)
    backoff_base: Duration = timedelta(seconds=1)
    backoff_cap: Duration = timedelta(minutes=5)

    @model_validator(mode="after")
    def _order(self) -> OutboundAttempts:
        if self.backoff_base <= timedelta(0):
            raise ValueError("outbound.attempts.backoff_base must be positive")
        if self.backoff_cap < self.backoff_base:
            raise ValueError("outbound.attempts.backoff_cap must be >= backoff_base")
        return self


class OutboundStuck(_Strict):
    """A chain is stuck when won longer than ``order_after`` ago without an order, or ordered (and paid,
    when payment is required) longer than ``label_after`` ago without a label."""

    order_after: Duration = timedelta(hours=2)
    label_after: Duration = timedelta(hours=4)


class OutboundBacklog(_Strict):
    """Outbox + step queue backlog: WARN beyond the ``*_warn`` values, ERROR beyond ``*_error``."""

    pending_warn: int = Field(default=100, ge=0)
    pending_error: int = Field(default=1000, ge=0)
    oldest_warn: Duration = timedelta(minutes=15)
    oldest_error: Duration = timedelta(hours=1)

    @model_validator(mode="after")
    def _order(self) -> OutboundBacklog:
        if self.pending_error < self.pending_warn or self.oldest_error < self.oldest_warn:
            raise ValueError("outbound.backlog: the error thresholds must be >= the warn thresholds")
        return self


class OutboundPolicy(_Strict):
    """The outbound chain (deal won -> Odoo order -> EasyPost label -> write-back); docs/ARCHITECTURE.md."""

    enabled: bool = True
    # What starts a chain: the HubSpot deal reaching closed-won, or the order's Stripe payment succeeding.
    trigger: Literal["hubspot_deal_won", "stripe_payment_succeeded"] = "hubspot_deal_won"
    # The label waits until a succeeded Stripe payment for the order exists.
    require_payment: bool = False
    # Won, reopened, won again: nothing new (ignore), or a second chain with its own order (new_order).
    rewin: Literal["ignore", "new_order"] = "ignore"
    # The won deal's amount differs from the order's: rewrite the order lines, or dead-letter for review.
    amount_change: Literal["flag", "update"] = "flag"
    # The order is cancelled after its label was bought: refund through EasyPost, or dead-letter for review.
    cancel_after_label: Literal["refund", "review"] = "refund"
    # A deal first seen already won (the first sync of a portal with history) starts a chain only when it was
    # won this recently and no order references it yet, so the history is not ordered a second time.
    first_seen_won_within: Duration = timedelta(days=2)
    rate: RateChoice = RateChoice()
    parcel: Parcel = Parcel()
    from_address: FromAddress = _SANDBOX_FROM
    # HubSpot hs_sku -> Odoo default_code, where they differ (a SKU not listed is looked up as is).
    sku_map: Annotated[dict[str, str], BeforeValidator(_text_map)] = Field(default_factory=dict)
    # HubSpot owner id -> Odoo user id (sale.order user_id); an owner not listed leaves user_id unset.
    owner_map: Annotated[dict[str, int], BeforeValidator(_text_keys)] = Field(default_factory=dict)
    concurrency: OutboundConcurrency = OutboundConcurrency()
    attempts: OutboundAttempts = OutboundAttempts()
    stuck: OutboundStuck = OutboundStuck()
    backlog: OutboundBacklog = OutboundBacklog()

    @model_validator(mode="after")
    def _maps(self) -> OutboundPolicy:
        for sku, code in self.sku_map.items():
            if not sku.strip() or not code.strip():
                raise ValueError("outbound.sku_map: empty SKU or product code")
        return self

    def odoo_code(self, sku: str) -> str:
        """The Odoo product default_code for a HubSpot SKU."""
        return self.sku_map.get(sku, sku)


_SYSTEM_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _system_keys(section: str, keys: Any) -> None:
    for key in keys:
        if not _SYSTEM_NAME.fullmatch(str(key)):
            raise ValueError(f"{section}: {key!r} is not a system name")


class ApiBudgetPolicy(_Strict):
    """One external API's request budget (per account), shared by every run and process through the warehouse
    (``warehouse/api_budget.py``): at most ``per_window`` requests per ``window`` and ``daily`` per UTC day;
    a backfill may take at most ``backfill_share`` of each window, so live pulls and the outbound chain never
    wait longer than one window."""

    per_window: int = Field(ge=1, le=100_000)
    window: Duration
    daily: int | None = Field(default=None, ge=1)
    backfill_share: float = Field(default=0.5, gt=0, le=1)

    @model_validator(mode="after")
    def _sane(self) -> ApiBudgetPolicy:
        if not timedelta(milliseconds=100) <= self.window <= timedelta(days=1):
            raise ValueError("api_budget window must be between 0.1s and 1d")
        if self.daily is not None and self.daily < self.per_window:
            raise ValueError("api_budget daily must be at least per_window")
        return self

    @property
    def backfill_per_window(self) -> int:
        """Requests a backfill may send per window (at least one, so a backfill always moves)."""
        return max(1, int(self.per_window * self.backfill_share))


# HubSpot's documented burst limit for private apps (100 per 10 s) and the Professional daily limit;
# Odoo and Stripe as configured in the shipped policies.yaml. Used when a file has no ``api_budget:``.
DEFAULT_API_BUDGETS: dict[str, ApiBudgetPolicy] = {
    "hubspot": ApiBudgetPolicy(per_window=100, window=timedelta(seconds=10), daily=250_000),
    "odoo": ApiBudgetPolicy(per_window=50, window=timedelta(seconds=10)),
    "stripe": ApiBudgetPolicy(per_window=100, window=timedelta(seconds=1)),
}


class PartitionSource(_Strict):
    """A source's own partition settings (today: its first partition)."""

    start: date | None = None


class PartitionsPolicy(_Strict):
    """Daily UTC partitions of the API-pull assets (issue 13): the first day, how many partitions one backfill
    run takes (``BackfillPolicy.multi_run``) and how many earlier days a scheduled run re-reads."""

    start: date = date(2026, 9, 1)
    sources: dict[str, PartitionSource] = Field(default_factory=dict)
    max_partitions_per_run: int = Field(default=10, ge=1, le=366)
    late_edits: int = Field(default=1, ge=0, le=31)

    @model_validator(mode="after")
    def _names(self) -> PartitionsPolicy:
        _system_keys("partitions.sources", self.sources)
        return self

    def start_for(self, system: str) -> date:
        """The first daily partition (UTC) of ``system``'s pull assets."""
        source = self.sources.get(system)
        return source.start if source is not None and source.start is not None else self.start


class _Layer(_Strict):
    """One level of overrides (defaults, a source, an entity): every section optional."""

    freshness: dict[str, Any] | None = None
    volume: dict[str, Any] | None = None
    quarantine: dict[str, Any] | None = None
    dead_letters: dict[str, Any] | None = None


class _SourceLayer(_Layer):
    entities: dict[str, _Layer] = Field(default_factory=dict)


class Policies(_Strict):
    """The whole policy file. Use :meth:`for_entity` and :meth:`check` rather than the raw sections."""

    version: Literal[1] = 1
    defaults: _Layer
    sources: dict[str, _SourceLayer] = Field(default_factory=dict)
    checks: dict[CheckName, CheckPolicy] = Field(default_factory=dict)
    integrity: IntegrityPolicy = IntegrityPolicy()
    reconciliation: ReconciliationPolicy = ReconciliationPolicy()
    sensors: SensorIntervals = SensorIntervals()
    runbooks: Runbooks = Runbooks()
    connector_http_errors: HttpErrorPolicy = HttpErrorPolicy()
    retention: RetentionPolicy = RetentionPolicy()
    events: EventsPolicy = EventsPolicy()
    outbound: OutboundPolicy = OutboundPolicy()
    api_budget: dict[str, ApiBudgetPolicy] = Field(default_factory=lambda: dict(DEFAULT_API_BUDGETS))
    partitions: PartitionsPolicy = PartitionsPolicy()
    path: str | None = None

    @model_validator(mode="after")
    def _resolvable(self) -> Policies:
        _system_keys("api_budget", self.api_budget)
        if not self.defaults.freshness:
            raise ValueError("defaults.freshness (fail, optional warn) is required")
        # Resolve every declared level once now, so a bad override fails at load time, not at run time.
        self.for_entity("", None)
        for system, src in self.sources.items():
            self.for_entity(system, None)
            for entity in src.entities:
                self.for_entity(system, entity)
        return self

    def for_entity(self, system: str, entity: str | None) -> EntityPolicy:
        """The merged thresholds of ``system``/``entity`` (entity None: the source level)."""
        layers: list[_Layer] = [self.defaults]
        src = self.sources.get(system)
        if src is not None:
            layers.append(src)
            if entity is not None and entity in src.entities:
                layers.append(src.entities[entity])
        merged: dict[str, dict[str, Any]] = {}
        for layer in layers:
            for section in ("freshness", "volume", "quarantine", "dead_letters"):
                values = getattr(layer, section)
                if values and section == "freshness":
                    merged[section] = dict(values)  # a window pair: a level that sets it sets both
                elif values:
                    merged.setdefault(section, {}).update(values)
        try:
            return EntityPolicy.model_validate(merged)
        except ValueError as exc:
            where = "/".join(p for p in (system, entity) if p) or "defaults"
            raise ValueError(f"policy for {where}: {exc}") from exc

    def check(self, name: CheckName) -> CheckPolicy:
        """Severity, blocking flag and runbook of one check (defaults: WARN, non-blocking)."""
        return self.checks.get(name, CheckPolicy())


def policies_path() -> Path:
    """INTEGRATION_POLICIES_FILE when set, else the policies.yaml shipped in the package."""
    return get_settings().policies_file or DEFAULT_POLICIES_FILE


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int) -> Policies:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("the file must be a YAML mapping")
        return Policies.model_validate({**raw, "path": path})
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: {exc}") from exc


def load_policies(path: Path | None = None) -> Policies:
    """The policies in ``path`` (default :func:`policies_path`); re-read when the file changes."""
    p = (path or policies_path()).resolve()
    try:
        mtime = p.stat().st_mtime_ns
    except OSError as exc:
        raise PolicyError(f"policies file {p} cannot be read: {exc.strerror}") from exc
    return _load(str(p), mtime)
