"""The shipped mapping contracts load, and a malformed contract is refused when it is loaded, not when it runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from integration_assets.contracts.models import CANONICAL_MODELS
from integration_assets.contracts.spec import CONTRACTS_DIR, ContractError, all_contracts, load_contract
from integration_assets.warehouse.schema import CANONICAL_TABLES, LINEAGE_COLUMNS

SHIPPED = {
    "hubspot.contacts.csv@v1": "contacts",
    "hubspot.contacts.api@v1": "contacts",
    "hubspot.contacts.parquet@v1": "contacts",
    "hubspot.companies.csv@v1": "companies",
    "hubspot.companies.api@v1": "companies",
    "hubspot.deals.csv@v1": "deals",
    "hubspot.deals.csv@v2": "deals",
    "hubspot.deals.api@v1": "deals",
    "odoo.res.partner.api@v1": "customers",
    "odoo.product.product.api@v1": "products",
    "odoo.sale.order.api@v1": "sales_orders",
    "odoo.sale.order.line.api@v1": "sales_order_lines",
    "odoo.account.move.api@v1": "invoices",
    "stripe.payment_intent.event@v1": "payments",
    "stripe.charge.event@v1": "payments",
    "stripe.refund.event@v1": "payments",
    "easypost.tracker.event@v1": "shipment_events",
}

MINIMAL = """\
system: hubspot
entity: contacts
variant: test
version: 1
target: contacts
formats: [csv]
fields:
  Record ID: {to: source_id, type: id, required: true}
  Last Modified Date: {to: source_updated_at, type: datetime, formats: ["%Y-%m-%d %H:%M"], required: true}
  Email: {to: email}
defaults:
  first_name: null
  last_name: null
  phone: null
  lifecycle_stage: null
  lead_status: null
  company_id: null
  country: null
  created_at: null
"""


def write(tmp_path: Path, text: str, name: str = "contacts_test.v1.yaml") -> Path:
    path = tmp_path / "hubspot" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- the shipped contracts --------------------------------------------------------------------------------
def test_every_shipped_contract_loads() -> None:
    contracts = all_contracts(CONTRACTS_DIR)
    assert {c.id: c.target for c in contracts} == SHIPPED
    for c in contracts:
        path = Path(c.path or "")
        assert path.parent.name == c.system, f"{c.id} is not under contracts/{c.system}/"
        assert path.name.endswith(f".v{c.version}.yaml"), path.name


def test_every_canonical_table_has_a_contract() -> None:
    assert set(SHIPPED.values()) == set(CANONICAL_MODELS)


def test_odoo_entities_are_model_names() -> None:
    odoo = {c.entity for c in all_contracts(CONTRACTS_DIR) if c.system == "odoo"}
    assert odoo == {"res.partner", "product.product", "sale.order", "sale.order.line", "account.move"}
    assert all(c.odoo_false_is_null for c in all_contracts(CONTRACTS_DIR) if c.system == "odoo")


@pytest.mark.parametrize("contract_id", sorted(SHIPPED))
def test_enum_values_pass_the_canonical_model(contract_id: str) -> None:
    """A value map may only produce values the canonical model accepts (a typo would quarantine every row)."""
    contract = next(c for c in all_contracts(CONTRACTS_DIR) if c.id == contract_id)
    schema = CANONICAL_MODELS[contract.target].to_schema()
    for spec in contract.fields.values():
        if spec.type != "enum":
            continue
        column = schema.columns[spec.to]
        values = pd.Series(sorted(set(spec.values.values()))).astype(column.dtype.type)
        column.validate(pd.DataFrame({spec.to: values}))


@pytest.mark.parametrize("contract_id", sorted(SHIPPED))
def test_text_fits_the_warehouse_column(contract_id: str) -> None:
    """Postgres refuses a too-long varchar and would fail the whole load: contracts must cap every text field."""
    contract = next(c for c in all_contracts(CONTRACTS_DIR) if c.id == contract_id)
    table = CANONICAL_TABLES[contract.target]
    for src, spec in contract.fields.items():
        col_type = table.c[spec.to].type
        if not isinstance(col_type, sa.String) or isinstance(col_type, sa.Text) or col_type.length is None:
            continue
        if spec.type == "enum":
            assert max(len(v) for v in spec.values.values()) <= col_type.length, src
        elif spec.type in ("id", "association") or (spec.type == "many2one" and spec.part == "id"):
            assert col_type.length >= 64, src  # ids are capped at 64 characters by the engine
        elif spec.to not in ("currency",):  # currency codes are held to ^[A-Z]{3}$ by the model
            assert spec.max_length is not None and spec.max_length <= col_type.length, (src, spec.max_length)


def test_deals_v2_only_adds_labels() -> None:
    """v2 absorbs renamed labels; every v1 label must still map to the same internal value."""
    by_id = {c.id: c for c in all_contracts(CONTRACTS_DIR)}
    v1, v2 = by_id["hubspot.deals.csv@v1"], by_id["hubspot.deals.csv@v2"]
    assert set(v1.fields) == set(v2.fields) and set(v1.ignored) < set(v2.ignored)
    for src, spec in v1.fields.items():
        assert v2.fields[src].to == spec.to
        for label, value in spec.values.items():
            assert v2.fields[src].values[label] == value
    assert v2.fields["Deal Stage"].values["Discovery Call Booked"] == "appointmentscheduled"
    assert v2.fields["Pipeline"].values["New Business"] == "default"


# -- canonical models and SQL tables ----------------------------------------------------------------------
@pytest.mark.parametrize("table", sorted(CANONICAL_MODELS))
def test_model_columns_match_the_sql_table(table: str) -> None:
    model_columns = set(CANONICAL_MODELS[table].to_schema().columns)
    sql_columns = {c.name for c in CANONICAL_TABLES[table].columns}
    assert model_columns == sql_columns - LINEAGE_COLUMNS


def test_models_and_tables_are_the_same_set() -> None:
    assert set(CANONICAL_MODELS) == set(CANONICAL_TABLES)


# -- malformed contracts are refused at load time ---------------------------------------------------------
def test_minimal_contract_loads(tmp_path: Path) -> None:
    c = load_contract(write(tmp_path, MINIMAL))
    assert c.id == "hubspot.contacts.test@v1"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(("variant: test", "variant: test\ncolour: blue"), "colour", id="unknown-top-level-key"),
        pytest.param(
            ("Email: {to: email}", "Email: {to: email, nullable: true}"), "nullable", id="unknown-field-key"
        ),
        pytest.param(
            ("Email: {to: email}", """Email: {to: 'x"; DROP TABLE t;--'}"""),
            "not a safe identifier",
            id="sql-injection-identifier",
        ),
        pytest.param(
            ("Email: {to: email}", "Email: {to: " + "e" * 64 + "}"),
            "not a safe identifier",
            id="64-byte-identifier",
        ),
        pytest.param(
            ("Email: {to: email}", "Email: {to: emial}"),
            "not in canonical model",
            id="unknown-canonical-column",
        ),
        pytest.param(("target: contacts", "target: people"), "unknown canonical table", id="unknown-target"),
        pytest.param(("Email: {to: email}", "Email: {to: email, type: text}"), "type", id="unknown-type"),
        pytest.param(
            ("Email: {to: email}", "Email: {to: email, on_unknown: ignore}"),
            "on_unknown",
            id="unknown-policy",
        ),
        pytest.param(
            ("Email: {to: email}", "Email: {to: email, part: name}"),
            "only applies to many2one",
            id="part-outside-many2one",
        ),
        pytest.param(
            ("Email: {to: email}", "Email: {to: email, type: enum}"),
            "needs 'values'",
            id="enum-without-values",
        ),
        pytest.param(
            ("Email: {to: email}", "Email: {to: email, type: datetime}"),
            "needs 'formats'",
            id="datetime-without-formats",
        ),
        pytest.param(
            ("  country: null\n", ""), "no source, default or derivation", id="canonical-column-unmapped"
        ),
        pytest.param(
            ("  Email: {to: email}", "  Email: {to: email}\n  Mail: {to: email}"),
            "several source columns",
            id="two-sources-one-column",
        ),
        pytest.param(
            ("  Email: {to: email}", "  Email: {to: email}\n  Email: {to: phone}"),
            "duplicate key 'Email'",
            id="duplicate-yaml-key",
        ),
        pytest.param(
            ("Record ID: {to: source_id, type: id, required: true}", "Record ID: {to: first_name}"),
            "must produce source_id",
            id="no-source-id",
        ),
        pytest.param(("formats: [csv]", "formats: [xlsx]"), "formats", id="unknown-format"),
    ],
)
def test_malformed_contract_is_refused(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    old, new = edit
    assert old in MINIMAL
    path = write(tmp_path, MINIMAL.replace(old, new, 1))
    with pytest.raises(ContractError, match="contacts_test.v1.yaml") as err:
        load_contract(path)
    assert message in str(err.value)


def test_reference_to_unknown_table_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "references:\n  company_id: {table: firms}\n")
    with pytest.raises(ContractError, match="reference to unknown table 'firms'"):
        load_contract(path)


def test_same_version_twice_is_refused(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL, "a.v1.yaml")
    write(tmp_path, MINIMAL, "b.v1.yaml")
    with pytest.raises(ContractError, match=r"hubspot.contacts.test@v1 defined twice"):
        all_contracts(tmp_path)


def test_one_bad_file_fails_the_whole_registry(tmp_path: Path) -> None:
    """A contracts folder is loaded as a whole: a broken file is reported, never silently skipped."""
    root = tmp_path / "contracts"
    shutil.copytree(CONTRACTS_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (root / "odoo" / "sale_order.v1.yaml").write_text("system: odoo\nentity: sale.order\n")
    with pytest.raises(ContractError, match="sale_order.v1.yaml"):
        all_contracts(root)
