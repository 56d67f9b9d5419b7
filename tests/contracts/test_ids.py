"""Canonical ids: one normalisation per id type (integration_assets.contracts.ids), vectorised and per value alike,
and the mapping engine quarantining what is not an id with check ``invalid_id``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from integration_assets.contracts import ids
from integration_assets.contracts.spec import ContractError, all_contracts, load_contract
from tests.mapping.test_engine import col, json_map, make_contract

# value -> canonical Odoo/HubSpot id (None: not an id)
NUMERIC = {
    "42": "42",
    "042": "42",
    "42.0": "42",
    "4.2e1": "42",
    "4.2E+1": "42",
    " 42 ": "42",
    "42.": "42",
    "0000000042": "42",
    "7001e0": "7001",
    "1.5e2": "150",
    "abc": None,
    "true": None,
    "false": None,
    "-3": None,
    "+3": None,
    "42.5": None,
    "0": None,
    "000": None,
    "0.0": None,
    "": None,
    " ": None,
    "4 2": None,
    "0x2A": None,
    "1e400": None,
    "nan": None,
    "inf": None,
    "1e20": None,
    "[42]": None,
}
JSON_VALUES: list[tuple[Any, str | None]] = [
    (42, "42"),
    (42.0, "42"),
    (4.2e1, "42"),
    (True, None),
    (False, None),
    (-3, None),
    (42.5, None),
    (0, None),
    (None, None),
    (float("nan"), None),
    (float("inf"), None),
]
PREFIXED = {
    "evt_1NG8Du2eZvKYlo2CiSjA": "evt_1NG8Du2eZvKYlo2CiSjA",
    " pi_3MtwBw ": "pi_3MtwBw",
    "shp_0a1b": "shp_0a1b",
    "cs_test_a1B2": "cs_test_a1B2",
    "trk_c4d0d2b5": "trk_c4d0d2b5",
    "PI_1": None,
    "pi": None,
    "pi_": None,
    "_1": None,
    "pi-1": None,
    "42": None,
    "pi_1 2": None,
    "": None,
    "evt_" + "x" * 61: None,  # longer than the 64-character key column
}


@pytest.mark.parametrize("id_type", ["odoo", "hubspot"])
def test_numeric_ids_vectorised_and_per_value_agree(id_type: str) -> None:
    values = list(NUMERIC)
    out, bad = ids.normalise(pd.Series(values, dtype=pd.StringDtype("pyarrow")), id_type)
    got = [None if pd.isna(v) else v for v in out]
    assert got == list(NUMERIC.values())
    assert bad.tolist() == [v is None for v in NUMERIC.values()]
    assert [ids.normalise_one(v, id_type) for v in values] == list(NUMERIC.values())


@pytest.mark.parametrize("id_type", ["odoo", "hubspot"])
def test_json_scalars(id_type: str) -> None:
    values = [v for v, _ in JSON_VALUES]
    assert [ids.normalise_one(v, id_type) for v in values] == [w for _, w in JSON_VALUES]
    ints = pd.Series([42, 7, 42], dtype="int64")  # a JSON/Parquet column of integers
    assert ids.normalise(ints, id_type)[0].tolist() == ["42", "7", "42"]


def test_range_of_each_numeric_type() -> None:
    assert (
        ids.odoo_id("2147483647") == "2147483647" and ids.odoo_id("2147483648") is None
    )  # Odoo ids are int4
    assert ids.hubspot_id("9223372036854775807") == "9223372036854775807"
    assert ids.hubspot_id("9223372036854775808") is None
    assert ids.hubspot_id(2.0**53 + 2) is None  # a float that large cannot tell neighbouring ids apart
    floats = pd.Series([42.0, 42.5, 2.0**53 + 2, None], dtype="float64")
    assert ids.normalise(floats, "hubspot")[1].tolist() == [False, True, True, False]
    big = pd.Series(["9223372036854775807", "9223372036854775808", "99999999999999999999"])
    assert ids.normalise(big, "hubspot")[1].tolist() == [False, True, True]


def test_prefixed_ids() -> None:
    out, bad = ids.normalise(pd.Series(list(PREFIXED)), "prefixed")
    assert [None if pd.isna(v) else v for v in out] == list(PREFIXED.values())
    assert bad.tolist() == [v is None for v in PREFIXED.values()]
    assert [ids.prefixed_id(v) for v in PREFIXED] == list(PREFIXED.values())


def test_nulls_are_not_invalid() -> None:
    out, bad = ids.normalise(pd.Series([None, "42"], dtype=pd.StringDtype("pyarrow")), "odoo")
    assert out.isna().tolist() == [True, False] and bad.tolist() == [False, False]


def test_unknown_id_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown id type"):
        ids.normalise(pd.Series(["1"]), "uuid")


# -- in the mapping engine ----------------------------------------------------------------------------------
ODOO_KEY = {"to": "source_id", "type": "id", "id_type": "odoo", "required": True}
ODOO_TS = {"to": "source_updated_at", "type": "datetime", "formats": ["%Y-%m-%d %H:%M:%S"], "required": True}


def _partner_contract(**fields: Any) -> Any:
    return make_contract(
        "customers",
        {"id": ODOO_KEY, "write_date": ODOO_TS, **fields},
        formats=("jsonl",),
        with_timestamp=False,
        odoo_false_is_null=True,
    )


def test_engine_normalises_source_ids_and_quarantines_what_is_not_an_id(tmp_path: Path) -> None:
    ids_in: list[Any] = [42, "042", "42.0", 4.2e1, "4.2e1", "abc", True, -1, 42.5, "", " 7 "]
    records = [{"id": v, "write_date": "2026-11-20 10:00:00"} for v in ids_in]
    result = json_map(tmp_path, _partner_contract(), records)
    assert col(result, "source_id") == ["42", "42", "42", "42", "42", "7"]
    failures = {f.position: f for f in result.failures}
    assert sorted(failures) == [6, 7, 8, 9, 10]
    for pos, shown in [(6, "abc"), (7, "True"), (8, "-1"), (9, "42.5")]:
        f = failures[pos]
        assert (f.check, f.column, f.value) == ("invalid_id", "id", shown), f
        assert "'id' is not a valid odoo id" in f.reason and shown in f.reason
    assert failures[10].check == "required"  # an empty id is a missing key


def test_engine_normalises_many2one_and_association_ids(tmp_path: Path) -> None:
    contract = _partner_contract(parent_id={"to": "parent_id", "type": "many2one", "id_type": "odoo"})
    records = [
        {"id": i + 1, "write_date": "2026-11-20 10:00:00", "parent_id": v}
        for i, v in enumerate(
            [[42, "Acme"], ["042", "Acme"], [42.0, "Acme"], False, 7, [True, "x"], [-2, "x"], [[1], "x"], []]
        )
    ]
    result = json_map(tmp_path, contract, records)
    assert col(result, "parent_id") == ["42", "42", "42", None, "7"]
    bad = {f.position: (f.check, f.column) for f in result.failures}
    assert bad == {
        6: ("invalid_id", "parent_id"),
        7: ("invalid_id", "parent_id"),
        8: ("invalid_id", "parent_id"),
        9: ("invalid_id", "parent_id"),
    }

    contacts = make_contract(
        "contacts",
        {
            "id": {**ODOO_KEY, "id_type": "hubspot"},
            "lastmodifieddate": {
                "to": "source_updated_at",
                "type": "datetime",
                "formats": ["iso8601"],
                "required": True,
            },
            "associations.companies.results": {
                "to": "company_id",
                "type": "association",
                "id_type": "hubspot",
            },
        },
        formats=("jsonl",),
        with_timestamp=False,
    )
    recs = [
        {
            "id": "07001",
            "lastmodifieddate": "2026-11-20T10:00:00Z",
            "associations": {"companies": {"results": [{"id": "09001", "type": "contact_to_company"}]}},
        },
        {
            "id": "7002",
            "lastmodifieddate": "2026-11-20T10:00:00Z",
            "associations": {"companies": {"results": [{"id": "x9", "type": "contact_to_company"}]}},
        },
    ]
    out = json_map(tmp_path, contacts, recs)
    assert col(out, "source_id") == ["7001"] and col(out, "company_id") == ["9001"]
    assert [(f.check, f.column, f.value) for f in out.failures] == [
        (
            "invalid_id",
            "associations.companies.results",
            json.dumps([{"id": "x9", "type": "contact_to_company"}]),
        )
    ]


def test_id_type_only_on_id_fields(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'id_type' only applies"):
        make_contract("customers", {"name": {"to": "name", "id_type": "odoo"}})
    with pytest.raises(ValueError):
        make_contract("customers", {"parent_id": {"to": "parent_id", "type": "id", "id_type": "uuid"}})


def test_on_missing_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "odoo" / "res_partner.v9.yaml"
    path.parent.mkdir()
    shipped = next(c for c in all_contracts() if c.id == "odoo.res.partner.api@v1")
    path.write_text(
        Path(str(shipped.path))
        .read_text(encoding="utf-8")
        .replace("version: 1", "version: 9\non_missing: erase"),
        encoding="utf-8",
    )
    with pytest.raises(ContractError, match="on_missing"):
        load_contract(path)


def test_every_shipped_key_and_reference_declares_its_id_type() -> None:
    """Keys and the columns pointing at them normalise alike: a reference's id type is its parent's."""
    key_types: dict[tuple[str, str], str | None] = {}
    for c in all_contracts():
        src = c.source_for("source_id")
        assert src and c.fields[src].id_type, f"{c.id}: source_id has no id_type"
        key_types[(c.system, c.target)] = c.fields[src].id_type
    for c in all_contracts():
        for column, ref in c.references.items():
            src = c.source_for(column)
            assert src and c.fields[src].id_type == key_types[(c.system, ref.table)], (c.id, column)
