"""Unit tests of the mapping engine: each field type and policy, on small frames read by the real readers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from integration_assets.connectors.files.source import inspect
from integration_assets.contracts.models import CANONICAL_MODELS
from integration_assets.contracts.records import BAD_BYTE_MIN
from integration_assets.contracts.spec import Contract
from integration_assets.mapping.engine import ContractMapper
from integration_assets.mapping.results import MappedChunk, RowFailure

TS = "Last Modified Date"
TS_SPEC = {"to": "source_updated_at", "type": "datetime", "formats": ["%Y-%m-%d %H:%M"], "required": True}
KEY_SPEC = {"to": "source_id", "type": "id", "required": True}


def make_contract(
    target: str,
    fields: dict[str, dict[str, Any]],
    *,
    formats: tuple[str, ...] = ("csv",),
    with_timestamp: bool = True,
    **extra: Any,
) -> Contract:
    """A contract for ``target`` keyed on ``id``, whose unmapped canonical columns default to null."""
    fields = {"id": KEY_SPEC, **({TS: TS_SPEC} if with_timestamp else {}), **fields}
    canonical = set(CANONICAL_MODELS[target].to_schema().columns)
    produced = (
        {f["to"] for f in fields.values()} | set(extra.get("defaults", {})) | set(extra.get("derived", {}))
    )
    defaults = {**dict.fromkeys(sorted(canonical - produced)), **extra.pop("defaults", {})}
    return Contract.model_validate(
        {
            "system": "test",
            "entity": target,
            "version": 1,
            "target": target,
            "formats": list(formats),
            "fields": fields,
            "defaults": defaults,
            **extra,
        }
    )


def csv_map(
    tmp_path: Path, contract: Contract, header: list[str], rows: list[list[str]], **kw: Any
) -> MappedChunk:
    """Write a CSV (id and timestamp columns added), read it with the file reader and map its one chunk."""
    lines = [",".join(["id", TS, *header])]
    for i, row in enumerate(rows, 1):
        lines.append(",".join([str(i), "2026-11-20 10:00", *row]))
    path = tmp_path / "in.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return _map_file(path, contract, **kw)


def json_map(tmp_path: Path, contract: Contract, records: list[dict[str, Any]], **kw: Any) -> MappedChunk:
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return _map_file(path, contract, **kw)


def _map_file(path: Path, contract: Contract, **kw: Any) -> MappedChunk:
    src = inspect(path, max_bytes=0)
    chunks = list(src.chunks(10_000))
    assert len(chunks) == 1
    return ContractMapper(contract, **kw).map_chunk(chunks[0])


def col(result: MappedChunk, name: str) -> list[Any]:
    return [None if pd.isna(v) else v for v in result.frame.sort_values("_pos")[name].tolist()]


def failures(result: MappedChunk) -> list[tuple[int, str, str | None, str | None]]:
    return sorted((f.position, f.check, f.column, f.value) for f in result.failures)


# -- string -----------------------------------------------------------------------------------------------
def test_string_transforms_and_empty_values(tmp_path: Path) -> None:
    c = make_contract(
        "contacts",
        {
            "mail": {"to": "email", "transform": ["strip", "lower"]},
            "fn": {"to": "first_name", "transform": ["strip", "collapse_spaces"]},
            "cc": {"to": "country", "transform": ["upper"]},
        },
    )
    r = csv_map(
        tmp_path, c, ["mail", "fn", "cc"], [[" Ann@Example.COM ", "  Ann   Marie ", "fr"], ["", " ", ""]]
    )
    assert r.failures == []
    assert col(r, "email") == ["ann@example.com", None]
    assert col(r, "first_name") == ["Ann Marie", None]
    assert col(r, "country") == ["FR", None]


def test_string_max_length_quarantines_the_row(tmp_path: Path) -> None:
    c = make_contract("contacts", {"fn": {"to": "first_name", "max_length": 5}})
    r = csv_map(tmp_path, c, ["fn"], [["Ann"], ["Annabelle"]])
    assert col(r, "first_name") == ["Ann"]
    assert failures(r) == [(2, "max_length", "fn", "Annabelle")]
    assert r.failures[0].stage == "map" and r.failures[0].natural_key == "2"


def test_text_checks_flag_nul_bad_bytes_and_oversized_values_but_not_other_characters(tmp_path: Path) -> None:
    """The buffer pre-scan only skips columns that are plainly clean: characters sharing a lead byte with
    the carried bad bytes (fullwidth letters, U+FEFF) still load, and every real case is still caught."""
    c = make_contract("contacts", {"fn": {"to": "first_name"}, "ln": {"to": "last_name"}}, formats=("jsonl",))
    rows = [
        {"id": "1", TS: "2026-11-20 10:00", "fn": "\uff21nn", "ln": "\ufeffLee"},
        {"id": "2", TS: "2026-11-20 10:00", "fn": "A\x00b", "ln": "Ok"},
        {"id": "3", TS: "2026-11-20 10:00", "fn": "Bo" + BAD_BYTE_MIN, "ln": "Ok"},
        {"id": "4", TS: "2026-11-20 10:00", "fn": "Cy", "ln": "x" * 40},
    ]
    r = json_map(tmp_path, c, rows, max_field_bytes=32)
    assert col(r, "first_name") == ["\uff21nn"] and col(r, "last_name") == ["\ufeffLee"]
    assert sorted((f.position, f.check) for f in r.failures) == [
        (2, "nul_byte"),
        (3, "invalid_encoding"),
        (4, "value_too_large"),
    ]


# -- id ---------------------------------------------------------------------------------------------------
def test_id_accepts_json_numbers_and_rejects_unsafe_values(tmp_path: Path) -> None:
    c = make_contract("contacts", {"company": {"to": "company_id", "type": "id"}}, formats=("jsonl",))
    recs = [
        {"id": 42, TS: "2026-11-20 10:00", "company": 5790939450},
        {"id": "43", TS: "2026-11-20 10:00", "company": "12 34"},
    ]
    r = json_map(tmp_path, c, recs)
    assert col(r, "source_id") == ["42"]
    assert col(r, "company_id") == ["5790939450"]
    assert failures(r) == [(2, "invalid_id", "company", "12 34")]


def test_required_value_missing(tmp_path: Path) -> None:
    c = make_contract("contacts", {})
    path = tmp_path / "in.csv"
    path.write_text(f"id,{TS}\n1,2026-11-20 10:00\n,2026-11-20 10:00\n3,\n")
    r = _map_file(path, c)
    assert col(r, "source_id") == ["1"]
    assert failures(r) == [(2, "required", "id", ""), (3, "required", TS, "")]


# -- numbers ----------------------------------------------------------------------------------------------
def test_decimal_parses_strings_and_quarantines_not_a_number(tmp_path: Path) -> None:
    c = make_contract("deals", {"amt": {"to": "amount", "type": "decimal"}})
    r = csv_map(tmp_path, c, ["amt"], [["1500.00"], [" 12.5 "], [""], ["N/A"]])
    assert col(r, "amount") == [1500.0, 12.5, None]
    assert failures(r) == [(4, "not_a_number", "amt", "N/A")]
    assert r.drift.as_records() == [{"kind": "type_change", "column": "amt", "rows": 1, "sample": ["N/A"]}]


def test_decimal_from_json_floats_refuses_booleans(tmp_path: Path) -> None:
    c = make_contract("deals", {"amt": {"to": "amount", "type": "decimal"}}, formats=("jsonl",))
    recs = [
        {"id": 1, TS: "2026-11-20 10:00", "amt": 1799.0},
        {"id": 2, TS: "2026-11-20 10:00", "amt": "1500.00"},
        {"id": 3, TS: "2026-11-20 10:00", "amt": True},
        {"id": 4, TS: "2026-11-20 10:00", "amt": None},
    ]
    r = json_map(tmp_path, c, recs)
    assert col(r, "amount") == [1799.0, 1500.0, None]
    assert failures(r) == [(3, "not_a_number", "amt", "True")]


def test_integer_refuses_fractions(tmp_path: Path) -> None:
    c = make_contract("deals", {"amt": {"to": "amount", "type": "integer"}})
    r = csv_map(tmp_path, c, ["amt"], [["12"], ["12.5"], ["x"]])
    assert col(r, "amount") == [12.0]
    assert failures(r) == [(2, "not_an_integer", "amt", "12.5"), (3, "not_an_integer", "amt", "x")]


def test_validation_failure_names_the_model_check(tmp_path: Path) -> None:
    c = make_contract("deals", {"amt": {"to": "amount", "type": "decimal"}})
    r = csv_map(tmp_path, c, ["amt"], [["10"], ["-5"]])
    assert col(r, "amount") == [10.0]
    [f] = r.failures
    assert (f.position, f.stage, f.check, f.column, f.value) == (
        2,
        "validate",
        "amount:greater_than_or_equal_to(0)",
        "amt",
        "-5.0",
    )
    assert (json.loads(f.raw) if isinstance(f.raw, str) else f.raw) == {
        "id": "2",
        TS: "2026-11-20 10:00",
        "amt": "-5",
    }


# -- booleans ---------------------------------------------------------------------------------------------
def test_boolean_values(tmp_path: Path) -> None:
    c = make_contract("customers", {"co": {"to": "is_company", "type": "boolean"}})
    r = csv_map(tmp_path, c, ["co"], [["true"], ["No"], ["1"], [""], ["maybe"]])
    assert col(r, "is_company") == [True, False, True, None]
    assert failures(r) == [(5, "not_a_boolean", "co", "maybe")]


def test_odoo_false_is_a_value_for_booleans_and_null_for_the_rest(tmp_path: Path) -> None:
    """Regression: odoo_false_is_null used to make a required boolean's false a 'required value missing'."""
    c = make_contract(
        "customers",
        {
            "is_company": {"to": "is_company", "type": "boolean", "required": True},
            "active": {"to": "active", "type": "boolean"},
            "vat": {"to": "vat"},
            "parent_id": {"to": "parent_id", "type": "many2one"},
        },
        formats=("jsonl",),
        odoo_false_is_null=True,
    )
    recs = [
        {
            "id": 1,
            TS: "2026-11-20 10:00",
            "is_company": False,
            "active": False,
            "vat": False,
            "parent_id": False,
        },
        {
            "id": 2,
            TS: "2026-11-20 10:00",
            "is_company": True,
            "active": True,
            "vat": "BE0477472701",
            "parent_id": [14, "Azure Interior"],
        },
    ]
    r = json_map(tmp_path, c, recs)
    assert r.failures == []
    assert col(r, "is_company") == [False, True]
    assert col(r, "active") == [False, True]
    assert col(r, "vat") == [None, "BE0477472701"]
    assert col(r, "parent_id") == [None, "14"]


def test_without_odoo_false_is_null_false_is_text(tmp_path: Path) -> None:
    c = make_contract("customers", {"vat": {"to": "vat"}}, formats=("jsonl",))
    r = json_map(tmp_path, c, [{"id": 1, TS: "2026-11-20 10:00", "vat": False}])
    assert col(r, "vat") == ["false"]


# -- datetimes --------------------------------------------------------------------------------------------
def test_datetime_formats_zones_and_fallbacks(tmp_path: Path) -> None:
    c = make_contract(
        "contacts",
        {
            "created": {
                "to": "created_at",
                "type": "datetime",
                "formats": ["%Y-%m-%d %H:%M", "%d/%m/%Y"],
                "tz": "Europe/Paris",
            },
        },
    )
    r = csv_map(
        tmp_path, c, ["created"], [["2026-07-01 12:00"], ["02/01/2026"], ["2026-07-01T12:00:00Z"], [""]]
    )
    assert col(r, "created_at") == [
        pd.Timestamp("2026-07-01 10:00", tz="UTC"),
        pd.Timestamp("2026-01-01 23:00", tz="UTC"),
        None,
    ]
    assert failures(r) == [(3, "date_format", "created", "2026-07-01T12:00:00Z")]
    assert r.drift.as_records() == [
        {"kind": "format_change", "column": "created", "rows": 1, "sample": ["2026-07-01T12:00:00Z"]}
    ]


def test_iso8601_and_epoch(tmp_path: Path) -> None:
    c = make_contract(
        "contacts",
        {
            "lm": {"to": "source_updated_at", "type": "datetime", "formats": ["iso8601"], "required": True},
            "cr": {"to": "created_at", "type": "datetime", "formats": ["epoch_ms"]},
        },
        formats=("jsonl",),
        with_timestamp=False,
    )
    recs = [
        {"id": "1", "lm": "2019-12-07T16:50:06.678Z", "cr": "1717200000000"},
        {"id": "2", "lm": "2019-12-07T17:50:06+01:00", "cr": None},
    ]
    r = json_map(tmp_path, c, recs)
    assert r.failures == []
    assert col(r, "source_updated_at") == [
        pd.Timestamp("2019-12-07 16:50:06.678", tz="UTC"),
        pd.Timestamp("2019-12-07 16:50:06", tz="UTC"),
    ]
    assert col(r, "created_at") == [pd.Timestamp("2024-06-01 00:00", tz="UTC"), None]


def test_date_is_midnight_utc_and_odoo_false_is_null(tmp_path: Path) -> None:
    c = make_contract(
        "invoices",
        {
            "invoice_date": {"to": "invoice_date", "type": "date", "formats": ["%Y-%m-%d"]},
        },
        formats=("jsonl",),
        odoo_false_is_null=True,
        defaults={"move_type": "out_invoice", "state": "draft"},
    )
    recs = [
        {"id": 1, TS: "2026-11-20 10:00", "invoice_date": "2026-11-03"},
        {"id": 2, TS: "2026-11-20 10:00", "invoice_date": False},
        {"id": 3, TS: "2026-11-20 10:00", "invoice_date": "03.11.2026"},
    ]
    r = json_map(tmp_path, c, recs)
    assert col(r, "invoice_date") == [pd.Timestamp("2026-11-03", tz="UTC"), None]
    assert failures(r) == [(3, "date_format", "invoice_date", "03.11.2026")]


# -- enums ------------------------------------------------------------------------------------------------
STAGES = {"Lead": "lead", "Customer": "customer"}


@pytest.mark.parametrize(
    ("policy", "extra", "expected", "quarantined"),
    [
        ("quarantine", {}, ["lead", "customer", "lead"], True),
        ("null", {}, ["lead", "customer", "lead", None], False),
        ("keep", {}, ["lead", "customer", "lead", "partner"], False),
        ("default", {"default": "other"}, ["lead", "customer", "lead", "other"], False),
    ],
)
def test_enum_unknown_value_policies(
    tmp_path: Path, policy: str, extra: dict[str, str], expected: list[str | None], quarantined: bool
) -> None:
    c = make_contract(
        "contacts",
        {
            "stage": {
                "to": "lifecycle_stage",
                "type": "enum",
                "values": STAGES,
                "on_unknown": policy,
                **extra,
            },
        },
    )
    # Labels match case-insensitively, and an internal value is accepted as itself.
    r = csv_map(tmp_path, c, ["stage"], [["Lead"], ["CUSTOMER"], ["lead"], ["partner"]])
    assert col(r, "lifecycle_stage") == expected
    assert failures(r) == ([(4, "unknown_value", "stage", "partner")] if quarantined else [])
    assert r.drift.as_records() == [
        {"kind": "unknown_value", "column": "stage", "rows": 1, "sample": ["partner"]}
    ]


def test_enum_case_sensitive(tmp_path: Path) -> None:
    c = make_contract(
        "contacts",
        {
            "stage": {"to": "lifecycle_stage", "type": "enum", "values": STAGES, "case_insensitive": False},
        },
    )
    r = csv_map(tmp_path, c, ["stage"], [["Lead"], ["LEAD"]])
    assert col(r, "lifecycle_stage") == ["lead"]
    assert failures(r) == [(2, "unknown_value", "stage", "LEAD")]


def test_drift_samples_of_pii_columns_are_withheld(tmp_path: Path) -> None:
    c = make_contract(
        "contacts",
        {
            "stage": {"to": "lifecycle_stage", "type": "enum", "values": STAGES, "pii": True},
        },
    )
    r = csv_map(tmp_path, c, ["stage"], [["secret"]])
    assert r.drift.as_records()[0]["sample"] == ["<withheld: PII column>"]


# -- Odoo many2one ----------------------------------------------------------------------------------------
def test_many2one_id(tmp_path: Path) -> None:
    c = make_contract(
        "customers",
        {"parent_id": {"to": "parent_id", "type": "many2one"}},
        formats=("jsonl",),
        odoo_false_is_null=True,
    )
    recs = [
        {"id": 1, TS: "2026-11-20 10:00", "parent_id": [14, "Azure Interior"]},
        {"id": 2, TS: "2026-11-20 10:00", "parent_id": False},
        {"id": 3, TS: "2026-11-20 10:00", "parent_id": 15},
        {"id": 4, TS: "2026-11-20 10:00", "parent_id": "Azure Interior"},
    ]
    r = json_map(tmp_path, c, recs)
    assert col(r, "parent_id") == ["14", None, "15"]
    assert failures(r) == [(4, "invalid_many2one", "parent_id", "Azure Interior")]


def test_many2one_name_part(tmp_path: Path) -> None:
    c = make_contract(
        "customers",
        {
            "country_id": {"to": "country", "type": "many2one", "part": "name", "max_length": 20},
        },
        formats=("jsonl",),
        odoo_false_is_null=True,
    )
    recs = [
        {"id": 1, TS: "2026-11-20 10:00", "country_id": [233, "United States"]},
        {"id": 2, TS: "2026-11-20 10:00", "country_id": False},
        {"id": 3, TS: "2026-11-20 10:00", "country_id": "Belgium"},
        {"id": 4, TS: "2026-11-20 10:00", "country_id": [9, "The Democratic Republic of the Congo"]},
    ]
    r = json_map(tmp_path, c, recs)
    assert col(r, "country") == ["United States", None]
    assert failures(r) == [
        (3, "invalid_many2one", "country_id", "Belgium"),
        (4, "invalid_many2one", "country_id", '[9, "The Democratic Republic of the Congo"]'),
    ]


def test_many2one_name_for_currency_codes(tmp_path: Path) -> None:
    c = make_contract(
        "sales_orders",
        {
            "date_order": {"to": "order_date", "type": "datetime", "formats": ["%Y-%m-%d %H:%M:%S"]},
            "currency_id": {
                "to": "currency",
                "type": "many2one",
                "part": "name",
                "transform": ["strip", "upper"],
            },
        },
        formats=("jsonl",),
        odoo_false_is_null=True,
        defaults={"state": "sale"},
    )
    recs = [
        {"id": 1, TS: "2026-11-20 10:00", "date_order": "2026-11-20 13:04:55", "currency_id": [1, "USD"]},
        {"id": 2, TS: "2026-11-20 10:00", "date_order": "2026-11-20 13:04:55", "currency_id": [2, " eur"]},
        {"id": 3, TS: "2026-11-20 10:00", "date_order": "2026-11-20 13:04:55", "currency_id": [3, "Dollar"]},
    ]
    r = json_map(tmp_path, c, recs)
    assert col(r, "currency") == ["USD", "EUR"]
    assert col(r, "order_date") == [pd.Timestamp("2026-11-20 13:04:55", tz="UTC")] * 2
    assert [(f.position, f.stage, f.check) for f in r.failures] == [
        (3, "validate", "currency:str_matches('^[A-Z]{3}$')")
    ]


# -- HubSpot associations ---------------------------------------------------------------------------------
def test_association_from_api_records(tmp_path: Path) -> None:
    c = make_contract(
        "contacts",
        {"associations.companies.results": {"to": "company_id", "type": "association"}},
        formats=("jsonl",),
    )
    recs = [
        {
            "id": "1",
            TS: "2026-11-20 10:00",
            "associations": {
                "companies": {
                    "results": [
                        {"id": "5790939450", "type": "contact_to_company"},
                        {"id": "7", "type": "contact_to_company"},
                    ]
                }
            },
        },
        {"id": "2", TS: "2026-11-20 10:00"},
    ]
    r = json_map(tmp_path, c, recs)
    assert col(r, "company_id") == ["5790939450", None]


def test_association_from_export_cells(tmp_path: Path) -> None:
    """Regression: a plain id cell ("5790939450") used to map to null, and ';'-lists were kept whole."""
    c = make_contract("deals", {"Associated Company IDs": {"to": "company_id", "type": "association"}})
    r = csv_map(tmp_path, c, ["Associated Company IDs"], [["5790939450"], ["12;34"], [""]])
    assert col(r, "company_id") == ["5790939450", "12", None]


# -- defaults and derived columns -------------------------------------------------------------------------
def test_defaults_and_derived(tmp_path: Path) -> None:
    c = make_contract(
        "deals",
        {
            "stage": {
                "to": "stage",
                "type": "enum",
                "values": {"Closed Won": "closedwon", "Closed Lost": "closedlost"},
            },
            "name": {"to": "name"},
            "pipe": {"to": "pipeline"},
        },
        defaults={"company_id": "0"},
        derived={"is_closed_won": {"equals": ["stage", "closedwon"]}},
    )
    r = csv_map(
        tmp_path,
        c,
        ["stage", "name", "pipe"],
        [["Closed Won", "A", "default"], ["Closed Lost", "", ""], ["", "C", ""]],
    )
    assert col(r, "is_closed_won") == [True, False, None]
    assert col(r, "company_id") == ["0", "0", "0"]


def test_derived_in_and_coalesce(tmp_path: Path) -> None:
    c = make_contract(
        "customers",
        {
            "name": {"to": "name"},
            "city": {"to": "city"},
        },
        derived={
            "country": {"coalesce": ["city", "name"]},
            "is_company": {"in": ["name", ["Acme", "Globex"]]},
        },
    )
    r = csv_map(tmp_path, c, ["name", "city"], [["Acme", "Paris"], ["Ann", ""]])
    assert col(r, "country") == ["Paris", "Ann"]
    assert col(r, "is_company") == [True, False]


# -- values the warehouse cannot store ---------------------------------------------------------------------
def test_nul_bytes_are_quarantined(tmp_path: Path) -> None:
    c = make_contract("contacts", {"fn": {"to": "first_name"}}, formats=("jsonl",))
    r = json_map(
        tmp_path,
        c,
        [
            {"id": "1", TS: "2026-11-20 10:00", "fn": "Ann\u0000"},
            {"id": "2", TS: "2026-11-20 10:00", "fn": "Bob"},
        ],
    )
    assert col(r, "first_name") == ["Bob"]
    assert [(f.position, f.check, f.column, f.value) for f in r.failures] == [
        (1, "nul_byte", "fn", "Ann\\u0000")
    ]


def test_row_failures_never_carry_nul() -> None:
    """Regression: a NUL in a bad record made the dead-letter insert itself fail on Postgres (the whole load)."""
    f = RowFailure(
        position=1,
        natural_key="12\x00",
        stage="parse",
        check="csv_field_count",
        column="a\x00",
        value="x\x00y",
        reason="r\x00",
        raw="1,x\x00y",
        errors=(),
    )
    assert (f.natural_key, f.column, f.value, f.reason, f.raw) == (
        "12\\u0000",
        "a\\u0000",
        "x\\u0000y",
        "r\\u0000",
        "1,x\\u0000y",
    )


def test_oversized_values_are_quarantined(tmp_path: Path) -> None:
    c = make_contract("contacts", {"fn": {"to": "first_name"}})
    r = csv_map(tmp_path, c, ["fn"], [["x" * 200], ["ok"]], max_field_bytes=100)
    assert col(r, "first_name") == ["ok"]
    [f] = r.failures
    assert (
        (f.check, f.column) == ("value_too_large", "fn")
        and f.value is not None
        and f.value.startswith("x" * 80)
    )


def test_stray_latin1_bytes_are_quarantined_and_shown_in_the_fallback(tmp_path: Path) -> None:
    c = make_contract("contacts", {"fn": {"to": "first_name"}})
    path = tmp_path / "in.csv"
    path.write_bytes(
        f"id,{TS},fn\n1,2026-11-20 10:00,Zoë\n2,2026-11-20 10:00,Ren\xe9\n".encode().replace(
            b"Ren\xc3\xa9", b"Ren\xe9"
        )
    )
    r = _map_file(path, c)
    assert col(r, "first_name") == ["Zoë"]
    [f] = r.failures
    assert (f.stage, f.check, f.column, f.value) == ("parse", "invalid_encoding", "fn", "René")
    assert f.raw["fn"] == "René"


# -- parse failures, lineage, drift of columns -------------------------------------------------------------
def test_parse_failures_are_counted_and_carried(tmp_path: Path) -> None:
    c = make_contract("contacts", {"fn": {"to": "first_name"}})
    path = tmp_path / "in.csv"
    path.write_text(
        f"id,{TS},fn\n1,2026-11-20 10:00,Ann\n2,2026-11-20 10:00,Bob,extra\n3,2026-11-20 10:00,Cy\n"
    )
    r = _map_file(path, c)
    assert r.rows_in == 3
    assert col(r, "source_id") == ["1", "3"]
    assert col(r, "_pos") == [1, 3]
    [f] = r.failures
    assert (f.position, f.stage, f.check) == (2, "parse", "csv_field_count")


def test_an_unclosed_quote_costs_one_record_not_the_rest_of_the_file(tmp_path: Path) -> None:
    """Regression: the lines after an unclosed quote were swallowed into one failed record and never loaded."""
    c = make_contract("contacts", {"fn": {"to": "first_name"}})
    path = tmp_path / "in.csv"
    path.write_text(
        f'id,{TS},fn\n1,2026-11-20 10:00,Ann\n2,2026-11-20 10:00,"Bob\n3,2026-11-20 10:00,Cy\n'
        f'4,2026-11-20 10:00,"Di, Jr"\n5,2026-11-20 10:00,Ed,extra\n'
    )
    src = inspect(path, max_bytes=0)
    mapper = ContractMapper(c)
    results = [mapper.map_chunk(ch) for ch in src.chunks(10_000)]
    assert sum(r.rows_in for r in results) == 5
    loaded = pd.concat([r.frame for r in results]).sort_values("_pos")
    assert loaded["source_id"].tolist() == ["1", "3", "4"]
    assert loaded["first_name"].tolist() == ["Ann", "Cy", "Di, Jr"]
    assert loaded["_pos"].tolist() == [1, 3, 4]
    bad = sorted((f.position, f.check, f.raw) for r in results for f in r.failures)
    assert bad == [
        (2, "csv_unbalanced_quote", '2,2026-11-20 10:00,"Bob'),
        (5, "csv_field_count", "5,2026-11-20 10:00,Ed,extra"),
    ]


def test_positions_are_record_numbers_around_multiline_values(tmp_path: Path) -> None:
    c = make_contract("contacts", {"fn": {"to": "first_name"}})
    path = tmp_path / "in.csv"
    path.write_text(
        f'id,{TS},fn\n1,2026-11-20 10:00,"Ann\nMarie"\n2,2026-11-20 10:00,Bob,extra\n'
        f'3,2026-11-20 10:00,"Cy\n4,2026-11-20 10:00,Di\n'
    )
    mapper = ContractMapper(c)
    results = [mapper.map_chunk(ch) for ch in inspect(path, max_bytes=0).chunks(10_000)]
    loaded = pd.concat([r.frame for r in results]).sort_values("_pos")
    assert list(zip(loaded["source_id"], loaded["_pos"], strict=True)) == [("1", 1), ("4", 4)]
    assert loaded["first_name"].iloc[0] == "Ann\nMarie"
    assert sorted((f.position, f.check) for r in results for f in r.failures) == [
        (2, "csv_field_count"),
        (3, "csv_unbalanced_quote"),
    ]


def test_a_literal_quote_inside_a_value_is_not_an_open_quote(tmp_path: Path) -> None:
    c = make_contract("contacts", {"fn": {"to": "first_name"}})
    path = tmp_path / "in.csv"
    path.write_text(f'id,{TS},fn\n1,2026-11-20 10:00,24" screen\n2,2026-11-20 10:00,"Bob ""B"""\n')
    [chunk] = list(inspect(path, max_bytes=0).chunks(10_000))
    r = ContractMapper(c).map_chunk(chunk)
    assert r.failures == []
    assert col(r, "first_name") == ['24" screen', 'Bob "B"']


def test_lineage_columns(tmp_path: Path) -> None:
    c = make_contract("contacts", {"fn": {"to": "first_name"}})
    a = csv_map(tmp_path, c, ["fn"], [["Ann"], ["Bob"]])
    assert set(a.frame["source_system"]) == {"test"} and set(a.frame["mapping_version"]) == {c.id}
    assert col(a, "_pos") == [1, 2]
