"""The file readers' memory bound: the CSV reader's read-ahead waits for the consumer."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from integration_assets.connectors.files import csv_reader, source
from integration_assets.connectors.files.csv_reader import _ReadAhead
from tests.support.waits import wait_for


def test_read_ahead_stops_a_few_blocks_ahead_of_the_consumer(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(b"x" * 100)
    stream = _ReadAhead(path, blocks=2, timeout_s=30)
    done: list[bytes] = []

    def reader() -> None:
        for _ in range(4):
            done.append(stream.read(10))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    assert wait_for(lambda: len(done) == 2)
    time.sleep(0.1)  # the scenario: a window in which an unbounded third read would return
    assert len(done) == 2  # the third read waits for a consumed block
    stream.consumed()
    assert wait_for(lambda: len(done) == 3)
    stream.consumed()
    t.join(5)
    assert done == [b"x" * 10] * 4
    stream.close()


def test_a_slow_consumer_does_not_make_the_reader_buffer_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """~150 MiB of CSV (about ten 16 MiB blocks) read by a consumer that lags: pyarrow's reader thread, which
    would queue up to 32 blocks, stays within the window, and every row still arrives."""
    path = tmp_path / "contacts.csv"
    row = b'"1","Ann","Smith","ann@example.com","' + b"y" * 200 + b'"\n'
    with path.open("wb") as fh:
        fh.write(b"Record ID,First Name,Last Name,Email,Notes\n")
        for _ in range(0, 600_000, 20_000):
            fh.write(row * 20_000)
    ahead: list[int] = []

    class Recording(csv_reader._ReadAhead):
        def read(self, size: int = -1) -> bytes:
            data = super().read(size)
            ahead.append(self._reads - self._consumed)
            return data

    monkeypatch.setattr(csv_reader, "_ReadAhead", Recording)
    src = source.inspect(path, max_bytes=1 << 30, fallback_encoding="cp1252")
    rows = 0
    for chunk in src.chunks(100_000):
        time.sleep(0.2)  # an unbounded reader thread would run through the whole file meanwhile
        rows += len(chunk.frame)
    assert rows == 600_000
    assert len(ahead) >= 10 and max(ahead) <= 4, ahead


def test_csv_chunks_have_the_configured_size_and_keep_record_numbers(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    lines = ["Record ID,First Name"] + [f"{i},Name{i}" for i in range(1, 251)]
    lines[120] = "120,too,many,fields"  # record 120 cannot be parsed
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    src = source.inspect(path, max_bytes=1 << 20, fallback_encoding="cp1252")
    chunks = list(src.chunks(100))
    assert [len(c.frame) for c in chunks] == [100, 100, 49]
    positions = [int(p) for c in chunks for p in c.positions]
    assert positions == [p for p in range(1, 251) if p != 120]
    ids = [int(v) for c in chunks for v in c.frame["Record ID"]]
    assert ids == positions  # each row keeps its own record number
    assert [f.position for c in chunks for f in c.failures] == [120]


def test_closing_the_read_ahead_releases_a_waiting_reader(tmp_path: Path) -> None:
    """A consumer that stops early (a file rejected after its first chunk) must not leave pyarrow's reader
    thread waiting for the window to open."""
    path = tmp_path / "blob.bin"
    path.write_bytes(b"x" * 100)
    stream = _ReadAhead(path, blocks=1, timeout_s=600)
    got: list[bytes] = []

    def reader() -> None:
        got.append(stream.read(10))
        got.append(stream.read(10))  # waits: the first block was never consumed

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    assert wait_for(lambda: got)
    time.sleep(0.1)  # the scenario: a window in which an unbounded second read would return
    assert t.is_alive() and got == [b"x" * 10]
    stream.close()
    t.join(5)
    assert not t.is_alive() and got == [b"x" * 10, b""]


def test_a_file_in_a_fallback_encoding_reads_whole(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    rows = ["Record ID,First Name"] + [f"{i},Zoë{i}" for i in range(1, 2001)]
    path.write_bytes(("\n".join(rows) + "\n").encode("cp1252"))
    src = source.inspect(path, max_bytes=1 << 20, fallback_encoding="cp1252")
    assert src.encoding == "cp1252"
    frames = [c.frame for c in src.chunks(500)]
    assert [len(f) for f in frames] == [500, 500, 500, 500]
    assert frames[0]["First Name"].iloc[0] == "Zoë1"
