"""Runbook lines (integration_assets.alerts.runbook): placeholders filled in, and text a Markdown renderer that
passes raw HTML through (the Dagster UI) shows as written."""

from __future__ import annotations

import re
from html import unescape

from markdown_it import MarkdownIt

from integration_assets.alerts.runbook import fill, markdown


def visible(md: str) -> str:
    """What a browser shows for ``md`` rendered like the Dagster UI does (raw HTML allowed): tags vanish."""
    html = MarkdownIt("commonmark", {"html": True}).render(md)
    return unescape(re.sub(r"<[^>]*>", "", html)).strip()


def test_fill_replaces_known_placeholders_and_keeps_the_others_visible() -> None:
    text = "`integration-assets dlq list --source {system} --entity {entity}`; `contracts check {file}`"
    assert fill(text, system="hubspot", entity="contacts") == (
        "`integration-assets dlq list --source hubspot --entity contacts`; `contracts check {file}`"
    )
    assert fill(text) == text


def test_fill_reads_the_older_angle_bracket_form() -> None:
    assert fill("dlq list --source <system> --entity <entity>", system="odoo", entity="sale.order") == (
        "dlq list --source odoo --entity sale.order"
    )
    assert fill("contracts check <file>") == "contracts check {file}"


def test_markdown_shows_angle_brackets_that_would_be_eaten_as_html() -> None:
    raw = "integration-assets outbound trace <deal id> & then dlq list --source <system>;"
    assert visible(raw) != raw  # what the UI did: the "tags" disappear
    assert visible(markdown(raw)) == raw


def test_markdown_leaves_code_spans_alone() -> None:
    text = 'Run `integration-assets sql "SELECT * FROM t WHERE a < 3"` then <b>look</b>'
    out = markdown(text)
    assert '`integration-assets sql "SELECT * FROM t WHERE a < 3"`' in out
    assert visible(out) == 'Run integration-assets sql "SELECT * FROM t WHERE a < 3" then <b>look</b>'
