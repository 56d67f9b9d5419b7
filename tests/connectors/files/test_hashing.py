"""A file's identity and UTF-8 validity, in one pass or two (the sync hashes first, the load asks for both)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from integration_assets.connectors.files.hashing import content_hash, hash_and_check_utf8

CASES = {
    "ascii": b"id,name\n1,Ann\n",
    "utf8": "id,name\n1,Zoë\n2,Łukasz\n".encode(),
    "latin1": "id,name\n1,Zoë\n".encode("latin-1"),
    "cut_in_a_character": "id,name\n1,Zoë".encode()[:-1],
}


@pytest.mark.parametrize("hashed_first", [False, True])
@pytest.mark.parametrize("name", sorted(CASES))
def test_hash_and_validity(tmp_path: Path, name: str, hashed_first: bool) -> None:
    data = CASES[name]
    path = tmp_path / f"{name}.csv"
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    if hashed_first:
        assert content_hash(path) == sha
    valid = True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        valid = False
    assert hash_and_check_utf8(path) == (sha, valid)
    assert content_hash(path) == sha


def test_a_changed_file_is_hashed_again(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(CASES["ascii"])
    content_hash(path)
    path.write_bytes(CASES["latin1"])
    assert hash_and_check_utf8(path) == (hashlib.sha256(CASES["latin1"]).hexdigest(), False)
