"""Printing API results as the OpenStack CLI does: `-o table|json|yaml|value`, `-c COLUMN` to pick columns.

table is the default on a terminal and json otherwise, so a script that pipes a command gets output it can
parse without asking. json and yaml print the API's objects unchanged (only the picked columns with -c);
table and value print the command's columns, values formatted for people.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import click

from metalstream.errors import BadInput
from metalstream.humanize import format_bytes, format_duration

FORMATS = ("table", "json", "yaml", "value")


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    show: Callable[[Any], str] | None = None  # how table/value print it (default: cell())

    def cell(self, record: dict) -> str:
        value = record.get(self.key)
        return self.show(value) if self.show is not None and value is not None else cell(value)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):  # one `key: value` line per field; deeper values as compact JSON
        return "\n".join(f"{k}: {cell(v) if not isinstance(v, (dict, list)) else json.dumps(v, sort_keys=True)}"
                         for k, v in sorted(value.items()))
    if isinstance(value, list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def size(n: int) -> str:
    return format_bytes(n)


def seconds(value: float) -> str:
    return format_duration(value)


def default_format() -> str:
    return "table" if sys.stdout.isatty() else "json"


def pick(columns: list[Column], wanted: tuple[str, ...], records: list[dict]) -> list[Column]:
    """The columns -c asked for (a known column's key or any field of the records), in the order given."""
    if not wanted:
        return columns
    known = {c.key: c for c in columns}
    fields = {key for record in records for key in record}
    unknown = [w for w in wanted if w not in known and w not in fields]
    if unknown:
        choices = ", ".join(dict.fromkeys([*known, *sorted(fields)]))
        raise BadInput(f"no column {unknown[0]!r} (choose from: {choices})", location="--column")
    return [known.get(w) or Column(w, w) for w in wanted]


def emit_list(records: list[dict], columns: list[Column], fmt: str | None, wanted: tuple[str, ...] = ()) -> None:
    fmt = fmt or default_format()
    chosen = pick(columns, wanted, records)
    if fmt in ("json", "yaml"):
        data = [{c.key: r.get(c.key) for c in chosen} for r in records] if wanted else records
        _dump(data, fmt)
    elif fmt == "value":
        for record in records:
            click.echo(" ".join(c.cell(record) for c in chosen))
    else:
        click.echo(table([c.header for c in chosen], [[c.cell(r) for c in chosen] for r in records]))


def emit_one(record: dict, columns: list[Column] | None, fmt: str | None, wanted: tuple[str, ...] = ()) -> None:
    """One object: as a Field | Value table, or its JSON/YAML; every field unless -c picks some."""
    fmt = fmt or default_format()
    every = columns or []
    every = every + [Column(k, k) for k in record if k not in {c.key for c in every}]
    chosen = pick(every, wanted, [record])
    if fmt in ("json", "yaml"):
        _dump({c.key: record.get(c.key) for c in chosen} if wanted else record, fmt)
    elif fmt == "value":
        for c in chosen:
            click.echo(c.cell(record))
    else:
        click.echo(table(["Field", "Value"], [[c.key, c.cell(record)] for c in chosen]))


def _dump(data: Any, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        import yaml
        click.echo(yaml.safe_dump(data, sort_keys=True, default_flow_style=False).rstrip("\n"))


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain text table (+---+ rules), multi-line cells kept on their own lines."""
    split = [[cell_text.splitlines() or [""] for cell_text in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in split:
        for i, lines in enumerate(row):
            widths[i] = max(widths[i], *(len(line) for line in lines))
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"

    out = [rule, line(headers), rule]
    for row in split:
        for n in range(max(len(lines) for lines in row)):
            out.append(line([lines[n] if n < len(lines) else "" for lines in row]))
    out.append(rule)
    return "\n".join(out)
