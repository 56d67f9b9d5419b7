"""Plan a batch of deliveries, with no database: parse every body once, route it (``events.routing``), key it,
and map it.

Snapshot events (Stripe, EasyPost) are mapped per contract with the vectorised engine (one ``map_chunk`` per
contract and batch), HubSpot property changes per object type (``events.hubspot``), HubSpot privacy
deletions become erasure requests. Events that cannot apply are rejected here with a check and a reason. An
event delivered twice in the batch is kept once; the same key with other content (its content hash,
``queue.keys``) is a key collision, dead-lettered under a key of its own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from integration_assets.contracts.records import RawChunk
from integration_assets.contracts.spec import Contract
from integration_assets.erasure.audit import Erasure
from integration_assets.events import hubspot
from integration_assets.events.errors import EventRejected
from integration_assets.events.frames import raw_frame
from integration_assets.events.routing import Router, parse
from integration_assets.mapping.engine import ContractMapper
from integration_assets.privacy.subjects import canonical_id
from integration_assets.providers import volatile_fields
from integration_assets.queue import Delivery
from integration_assets.queue.keys import collision_key, message_fingerprint
from integration_assets.settings import get_settings

# Lifecycle order of statuses (docs/SOURCES.md §3.1, §4.2). Stripe's ``created`` has whole seconds and
# two events of one object often share a second (processing → succeeded); the rank is added to
# source_updated_at in microseconds, so within a second the later state wins the merge. Unlisted: 0.
PAYMENT_STATUS_RANK: dict[str, int] = {
    "payment_intent:requires_payment_method": 0,
    "payment_intent:requires_confirmation": 1,
    "payment_intent:requires_action": 2,
    "payment_intent:processing": 3,
    "payment_intent:requires_capture": 4,
    "payment_intent:canceled": 5,
    "payment_intent:succeeded": 5,
    "charge:pending": 0,
    "charge:failed": 1,
    "charge:succeeded": 1,
    "refund:pending": 0,
    "refund:requires_action": 1,
    "refund:failed": 2,
    "refund:canceled": 2,
    "refund:succeeded": 2,
}
TRACKER_STATUS_RANK: dict[str, int] = {
    "unknown": 0,
    "pre_transit": 1,
    "in_transit": 2,
    "out_for_delivery": 3,
    "available_for_pickup": 4,
    "delivered": 5,
    "return_to_sender": 5,
    "failure": 5,
    "cancelled": 5,
    "error": 5,
}


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event that goes to the dead letters (check and reason as stored there)."""

    delivery: Delivery
    check: str
    reason: str


@dataclass
class Item:
    """An accepted event: it gets a ledger row unless it turns out to be a duplicate."""

    pos: int
    delivery: Delivery
    target: str | None = None
    object_id: str | None = None
    outcome: str = "applied"
    fingerprint: str | None = None  # content hash (queue.keys): tells a duplicate from a key collision


@dataclass
class Plan:
    """A batch parsed, routed and mapped: everything that needs no database."""

    items: dict[int, Item] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    batch_duplicates: list[Delivery] = field(default_factory=list)
    frames: dict[str, list[pd.DataFrame]] = field(default_factory=lambda: defaultdict(list))
    hubspot: list[hubspot.PlannedChanges] = field(default_factory=list)
    # GDPR erasure requests (pos, table, object id, occurredAt), and the erasures the transaction ran
    # (integration_assets.privacy: their files are done after the commit).
    erasures: list[tuple[int, str, str, datetime]] = field(default_factory=list)
    erased: list[Erasure] = field(default_factory=list)

    def reject(self, pos: int, check: str, reason: str) -> None:
        item = self.items.pop(pos)
        self.rejections.append(Rejection(item.delivery, check, reason))

    def collide(self, delivery: Delivery, fingerprint: str, before: str) -> None:
        """``delivery`` has the key of an event with other content (``before``): a key collision. It is
        dead-lettered under its own key (``queue.keys.collision_key``), so it neither overwrites the first
        event's dead letter nor is taken for a redelivery of it; the queue settles the original delivery."""
        m = delivery.message
        alias = Delivery(
            replace(m, id=collision_key(m.id, fingerprint)), delivery.redelivered, delivery.receipt
        )
        reason = (
            f"key {m.id} was already taken by an event with other content (content {before[:12]}, this one "
            f"{fingerprint[:12]}): two different events under one key; the first is kept, this one is here"
        )
        self.rejections.append(Rejection(alias, "key_collision", reason))

    def settled(self) -> list[Delivery]:
        """The deliveries acked as such: every accepted event and every duplicate (not the rejections)."""
        return [i.delivery for i in self.items.values()] + self.batch_duplicates


def _rank_microseconds(table: str, frame: pd.DataFrame) -> pd.Series:
    if table == "payments":
        key = frame["object_type"].astype(object).fillna("") + ":" + frame["status"].astype(object).fillna("")
        rank = key.map(PAYMENT_STATUS_RANK).fillna(0).astype("int64") * 2
        refunded = frame["amount_refunded"].fillna(0).to_numpy() > 0  # charge.refunded after charge.succeeded
        return rank + refunded.astype("int64")
    if table == "shipment_events":
        return frame["status"].astype(object).map(TRACKER_STATUS_RANK).fillna(0).astype("int64")
    return pd.Series(0, index=frame.index, dtype="int64")


class Planner:
    """Plans batches (pure CPU: the drain runs one in a worker thread, a batch ahead). Holds the router and
    the contract mappers, so one planner belongs to one thread."""

    def __init__(self, *, max_field_bytes: int | None = None) -> None:
        self.router = Router()
        self.max_field_bytes = max_field_bytes or get_settings().max_field_bytes
        self._mappers: dict[str, tuple[Contract, ContractMapper]] = {}

    def _mapper(self, contract: Contract) -> ContractMapper:
        cached = self._mappers.get(contract.id)
        if cached is None or cached[0] is not contract:  # the contract file was edited and reloaded
            cached = (contract, ContractMapper(contract, max_field_bytes=self.max_field_bytes))
            self._mappers[contract.id] = cached
        return cached[1]

    def plan(self, deliveries: Sequence[Delivery]) -> Plan:
        """Parse, route and map a batch."""
        self.router.refresh()
        plan = Plan()
        seen: dict[str, str] = {}  # key -> content hash of its first delivery in the batch
        collisions: set[tuple[str, str]] = set()  # (key, content hash) already dead-lettered as a collision
        groups: dict[str, tuple[Any, list[tuple[int, dict[str, Any]]]]] = {}
        for pos, d in enumerate(deliveries):
            m = d.message
            fingerprint = message_fingerprint(m.body, m.headers, volatile_fields(m.source))
            before = seen.get(m.id)
            if before is not None:
                if before == fingerprint or (m.id, fingerprint) in collisions:
                    plan.batch_duplicates.append(d)
                else:
                    collisions.add((m.id, fingerprint))
                    plan.collide(d, fingerprint, before)
                continue
            seen[m.id] = fingerprint
            try:
                doc = parse(m)
                route = self.router.route(m, doc)
            except EventRejected as exc:
                plan.rejections.append(Rejection(d, exc.check, exc.reason))
                continue
            if route.ignored:  # a type policies.yaml ignores: counted in the ledger, not applied
                plan.items[pos] = Item(pos, d, outcome="ignored", fingerprint=fingerprint)
                continue
            plan.items[pos] = Item(pos, d, fingerprint=fingerprint)
            groups.setdefault(route.key, (route, []))[1].append((pos, doc))
        for route, members in groups.values():
            if route.erase_table is not None:
                self._plan_erasures(route.erase_table, members, plan)
                continue
            if route.contract is not None:
                self._plan_snapshots(route.contract, members, plan)
            else:
                self._plan_hubspot(route.hubspot_table, members, plan)
        return plan

    def _plan_snapshots(
        self, contract: Contract, members: list[tuple[int, dict[str, Any]]], plan: Plan
    ) -> None:
        """Events carrying a full object snapshot (Stripe, EasyPost): map with the contract, vectorised."""
        raw = raw_frame([doc for _, doc in members], list(contract.fields))
        positions = np.fromiter((pos for pos, _ in members), dtype=np.int64, count=len(members))
        mapped = self._mapper(contract).map_chunk(RawChunk(raw, positions, []))
        for f in mapped.failures:
            plan.reject(int(f.position), f.check, f"{contract.id}: {f.reason}")
        frame = mapped.frame
        if frame.empty:
            return
        frame["source_updated_at"] = frame["source_updated_at"] + pd.to_timedelta(
            _rank_microseconds(contract.target, frame).to_numpy(), unit="us"
        )
        for pos, source_id in zip(
            frame["_pos"].tolist(), frame["source_id"].astype(object).tolist(), strict=True
        ):
            item = plan.items[int(pos)]
            item.target, item.object_id = contract.target, source_id
        plan.frames[contract.target].append(frame)

    @staticmethod
    def _plan_erasures(table: str, members: list[tuple[int, dict[str, Any]]], plan: Plan) -> None:
        """``contact.privacyDeletion``: a GDPR erasure of the object (docs/PRIVACY.md), run in the batch's
        transaction. It needs the object's id; its time is only recorded."""
        for pos, doc in members:
            object_id = canonical_id(doc.get("objectId"))
            occurred = doc.get("occurredAt")
            if object_id is None or isinstance(occurred, bool) or not isinstance(occurred, int):
                plan.reject(
                    pos,
                    "invalid_payload",
                    "HubSpot privacyDeletion needs objectId (integer) and occurredAt (epoch ms)",
                )
                continue
            item = plan.items[pos]
            item.target, item.object_id = table, object_id
            when = datetime.fromtimestamp(occurred / 1000, UTC) if 0 <= occurred < 10**14 else utcnow()
            plan.erasures.append((pos, table, object_id, when))

    @staticmethod
    def _plan_hubspot(table: str | None, members: list[tuple[int, dict[str, Any]]], plan: Plan) -> None:
        assert table is not None
        planned, rejected, ignored = hubspot.plan(table, [hubspot.Change(pos, doc) for pos, doc in members])
        for pos, (check, reason) in rejected.items():
            plan.reject(pos, check, reason)
        for pos, doc in members:
            item = plan.items.get(pos)
            if item is None:
                continue
            item.target = table
            item.object_id = hubspot.object_id(doc.get("objectId")) or str(doc.get("objectId"))[:64]
            if pos in ignored:
                item.outcome = "ignored"
        if planned is not None:
            plan.hubspot.append(planned)
