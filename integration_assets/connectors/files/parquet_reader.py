"""Parquet exports: columns from the footer (checked against the limits), records row group by row group.

Nested structs become dotted columns, as flattened JSON records do; strings that are not UTF-8 are carried as
private-use code points, as in a CSV.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from integration_assets.contracts.records import PUA_ERRORS, FileRejected, RawChunk

if TYPE_CHECKING:
    from integration_assets.connectors.files.source import SourceFile


def _flat_fields(schema: pa.Schema, prefix: str = "") -> list[tuple[str, pa.DataType]]:
    """Leaf columns with dotted names, as ``Table.flatten`` names them (nested like flattened JSON records)."""
    out: list[tuple[str, pa.DataType]] = []
    for f in schema:
        if pa.types.is_struct(f.type) and f.type.num_fields:
            out += _flat_fields(pa.schema(list(f.type)), f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", f.type))
    return out


def parquet_columns(path: Path, max_columns: int, max_bytes: int) -> list[str]:
    """The columns of a Parquet file from its footer, after the checks a CSV gets from its size and header."""
    try:
        pf = pq.ParquetFile(path)
        meta, schema = pf.metadata, pf.schema_arrow
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a corrupt file
        raise FileRejected("unreadable_parquet", f"not a readable Parquet file: {exc}") from exc
    if max_columns and meta.num_columns > max_columns:
        raise FileRejected(
            "too_many_columns",
            f"the Parquet file has {meta.num_columns} columns, over the "
            f"configured limit of {max_columns} (INTEGRATION_MAX_COLUMNS)",
        )
    # Parquet is compressed: the size limit applies to what its pages decompress to (the footer says).
    unpacked = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if max_bytes and unpacked > max_bytes:
        raise FileRejected(
            "file_too_large",
            f"the Parquet file's data decompresses to {unpacked} bytes, over the "
            f"configured limit of {max_bytes} (which applies to the unpacked content)",
        )
    names = [name for name, _ in _flat_fields(schema)]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise FileRejected(
                "duplicate_header", f"duplicate column name {name!r}; the mapping would be ambiguous"
            )
        seen.add(name)
    return names


def _parquet_text(values: pa.Array) -> pa.Array:
    """Strings of a Parquet column as UTF-8 text: invalid bytes (Parquet does not check them) are carried as the
    private-use code points the CSV reader uses, so the row holding them is quarantined, not the file."""
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        try:
            values.validate(full=True)
            return values
        except pa.ArrowInvalid:
            values = values.view(pa.large_binary() if pa.types.is_large_string(values.type) else pa.binary())
    texts = [None if b is None else b.decode("utf-8", errors=PUA_ERRORS) for b in values.to_pylist()]
    return pa.array(texts, pa.large_string())


def _parquet_frame(batch: pa.RecordBatch) -> pd.DataFrame:
    table = pa.Table.from_batches([batch])
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    columns: dict[str, Any] = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        t = arr.type
        if pa.types.is_dictionary(t):
            arr = arr.dictionary_decode()
            t = arr.type
        if (
            pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or pa.types.is_binary(t)
            or pa.types.is_large_binary(t)
            or pa.types.is_fixed_size_binary(t)
        ):
            text = _parquet_text(arr)
            columns[name] = pd.Series(pd.array(text.cast(pa.large_string()), dtype=pd.StringDtype("pyarrow")))
        elif pa.types.is_integer(t):
            columns[name] = (
                pd.Series(arr.to_pandas(types_mapper={t: pd.Int64Dtype()}.get))
                if t != pa.uint64()
                else pd.Series(arr.to_pylist(), dtype=object)
            )
        elif pa.types.is_timestamp(t):
            # Outside the nanosecond range pandas and the warehouse use (year 9999): handed on as text, so the
            # date parser quarantines the row instead of the conversion failing the file.
            bound = (2**63 - 1) // {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[t.unit]
            span = pc.min_max(arr.view(pa.int64()))
            lo, hi = span["min"].as_py(), span["max"].as_py()
            if lo is None or (-bound < lo and hi < bound):
                columns[name] = pd.Series(arr.to_pandas())
            else:
                columns[name] = pd.Series(arr.cast(pa.string()).to_pylist(), dtype=pd.StringDtype("pyarrow"))
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t) or pa.types.is_struct(t):
            columns[name] = pd.Series(
                arr.to_pylist(), dtype=object
            )  # lists as JSON values, like a JSON record's
        else:
            columns[name] = pd.Series(arr.to_pandas())
    return pd.DataFrame(columns, index=pd.RangeIndex(table.num_rows))


def parquet_chunks(src: SourceFile, chunk_rows: int) -> Iterator[RawChunk]:
    done = 0
    try:
        # Read row group by row group: memory follows the row group and chunk size, not the file's.
        for batch in pq.ParquetFile(src.body).iter_batches(batch_size=chunk_rows):
            frame = _parquet_frame(batch)
            positions = np.arange(done + 1, done + len(frame) + 1, dtype=np.int64)
            done += len(frame)
            yield RawChunk(frame, positions, [])
    except (pa.ArrowException, OSError) as exc:
        # A damaged page is a property of the file, not a transient fault: the whole file is rejected (the load's
        # transaction rolls back what earlier chunks staged).
        raise FileRejected(
            "unreadable_parquet", f"the Parquet file cannot be read past record {done}: {exc}"
        ) from exc
