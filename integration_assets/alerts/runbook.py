"""Runbook lines as people read them: placeholders filled in, and text that survives a Markdown renderer.

A runbook (policies.yaml ``checks.<name>.runbook`` and ``runbooks:``) names commands with placeholders,
``{system}``, ``{entity}`` and ``{file}``. Where the alert or the check knows the source entity they are
filled in (:func:`fill`); the rest stay visible as ``{system}``. Older policy files wrote them as
``<system>``: those are read as the same placeholders, because the Dagster UI renders descriptions as
Markdown with raw HTML, where ``<system>`` is an unknown tag and disappears (``dlq list --source --entity``).
:func:`markdown` escapes what is left of ``<``, ``>`` and ``&`` outside code spans, so any runbook text
renders as written there.
"""

from __future__ import annotations

import re

__all__ = ["PLACEHOLDERS", "fill", "markdown"]

PLACEHOLDERS = ("system", "entity", "file")

_PLACEHOLDER = re.compile(r"[{<](system|entity|file)[}>]")
# A Markdown code span: a run of backticks, then anything up to the same run (CommonMark, "Code spans").
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_HTML_CHARS = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def fill(text: str, *, system: str | None = None, entity: str | None = None, file: str | None = None) -> str:
    """``text`` with ``{system}``, ``{entity}`` and ``{file}`` (or their ``<…>`` form) replaced by the values
    given; a placeholder without a value is written ``{name}``."""
    values = {"system": system, "entity": entity, "file": file}

    def sub(m: re.Match[str]) -> str:
        return values[m.group(1)] or "{" + m.group(1) + "}"

    return _PLACEHOLDER.sub(sub, text)


def markdown(text: str) -> str:
    """``text`` for a Markdown renderer that passes raw HTML through (the Dagster UI): ``<``, ``>`` and ``&``
    outside code spans become entities, code spans are left as they are (Markdown shows them literally)."""
    out: list[str] = []
    pos = 0
    for m in _CODE_SPAN.finditer(text):
        out.append(text[pos : m.start()].translate(_HTML_CHARS))
        out.append(m.group(0))
        pos = m.end()
    out.append(text[pos:].translate(_HTML_CHARS))
    return "".join(out)
