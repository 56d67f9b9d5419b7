"""The raw frame of a batch of events for one contract: each contract field pulled out of each event's JSON
document (dotted as ``flatten_record`` names them), one typed column per field, ready for the vectorised
mapping engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyarrow as pa

from integration_assets.contracts.records import flatten_record


class _Node:
    __slots__ = ("leaves", "subs")

    def __init__(self) -> None:
        self.leaves: dict[str, list[int]] = {}
        self.subs: dict[str, _Node] = {}


class Extractor:
    """Pulls a contract's dotted fields out of each event in one walk: the fields are arranged as a tree of
    their path segments, so a shared prefix (``data.object.``) is looked up once per event, not once per
    field. The values are exactly those of ``flatten_record``: an event in which a dict on the way holds a
    key with a dot (flatten_record would join it) is flattened by flatten_record itself."""

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = list(fields)
        self.root = _Node()
        for index, name in enumerate(self.fields):
            node = self.root
            *path, leaf = name.split(".")
            for part in path:
                node = node.subs.setdefault(part, _Node())
            node.leaves.setdefault(leaf, []).append(index)

    def columns(self, docs: Sequence[dict[str, Any]]) -> list[list[Any]]:
        out: list[list[Any]] = [[None] * len(docs) for _ in self.fields]
        for row, doc in enumerate(docs):
            if not self._walk(doc, self.root, out, row):
                flat = flatten_record(doc)
                for j, name in enumerate(self.fields):
                    out[j][row] = flat.get(name)
        return out

    def _walk(self, node: dict[str, Any], tree: _Node, out: list[list[Any]], row: int) -> bool:
        if any("." in key for key in node):
            return False
        for key, indexes in tree.leaves.items():
            if key in node:
                value = node[key]
                if isinstance(value, dict) and value:  # flatten_record expands it: no such column
                    continue
                for j in indexes:
                    out[j][row] = value
        for key, sub in tree.subs.items():
            value = node.get(key)
            if isinstance(value, dict) and value and not self._walk(value, sub, out, row):
                return False
        return True


def _column(values: list[Any]) -> pd.Series:
    """One source column with the narrowest dtype pyarrow infers (strings, integers, floats, booleans), so
    the mapping engine takes its vectorised paths; mixed or nested values stay Python objects, as from a
    JSON file."""
    try:
        kind = pa.array(values).type
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError):
        return pd.Series(values, dtype=object)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pd.Series(pd.array(values, dtype=pd.StringDtype("pyarrow")))
    if pa.types.is_integer(kind):
        return pd.Series(pd.array(values, dtype="Int64"))
    if pa.types.is_floating(kind):
        return pd.Series(values, dtype="float64")
    if pa.types.is_boolean(kind):
        return pd.Series(pd.array(values, dtype="boolean"))
    return pd.Series(values, dtype=object)


def raw_frame(docs: Sequence[dict[str, Any]], fields: Sequence[str]) -> pd.DataFrame:
    """The raw chunk of a batch of events for a contract: one column per contract field (dotted as
    ``flatten_record`` names them), typed per column."""
    values = Extractor(fields).columns(docs)
    return pd.DataFrame({name: _column(column) for name, column in zip(fields, values, strict=True)})
