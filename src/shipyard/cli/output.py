"""How client commands print: Rich tables for people, JSON for scripts, and errors as one
clear line on stderr with an exit code (2: invalid input or usage, 1: anything else)."""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shipyard.errors import InvalidInput, ShipyardError

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FAILED = 1
EXIT_INVALID = 2


class Format(enum.StrEnum):
    table = "table"
    json = "json"


OutputOption = Annotated[Format, typer.Option(
    "--output", "-o", help="table for people, json for scripts (stable: the API's fields)",
    case_sensitive=False)]

Cell = str | Callable[[dict[str, Any]], object]
"""A column's value: a key of the item, or a function of it."""


def stdout() -> Console:
    # Built per call so that a redirected sys.stdout (tests, pipes) is the one written to.
    return Console(highlight=False)


def stderr() -> Console:
    # soft_wrap: an error stays one line however narrow the terminal, for logs and grep.
    return Console(stderr=True, highlight=False, soft_wrap=True)


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def table(items: Iterable[dict[str, Any]], columns: Sequence[tuple[str, Cell]], *,
          title: str | None = None, empty: str = "nothing here yet") -> None:
    """Print items as a table, one row each; ``columns`` are (header, cell) pairs."""
    rows = list(items)
    if not rows:
        stderr().print(f"[dim]{escape(empty)}[/]")
        return
    out = Table(title=title, title_justify="left", header_style="bold")
    for header, _ in columns:
        out.add_column(header)
    for item in rows:
        out.add_row(*(escape(text(cell(item) if callable(cell) else item.get(cell)))
                      for _, cell in columns))
    stdout().print(out)


def record(item: dict[str, Any], fields: Sequence[tuple[str, Cell]]) -> None:
    """Print one object as a two-column (field, value) table."""
    out = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    out.add_column(style="bold")
    out.add_column()
    for label, cell in fields:
        out.add_row(label, escape(text(cell(item) if callable(cell) else item.get(cell))))
    stdout().print(out)


def show(data: Any, fmt: Format, render: Callable[[Any], None]) -> None:
    """JSON as the API returned it, or ``render(data)`` for a table."""
    if fmt is Format.json:
        emit_json(data)
    else:
        render(data)


def note(message: str) -> None:
    """A hint for people, on stderr so that stdout stays clean for scripts."""
    stderr().print(message)


def text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(text(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={text(v)}" for k, v in value.items()) or "-"
    return str(value)


def when(value: str | None) -> str:
    """An API timestamp, to the second, without the 'T'."""
    return value[:19].replace("T", " ") if value else "-"


def fail(error: ShipyardError) -> NoReturn:
    """Report an error on stderr and exit: 2 for invalid input, else 1."""
    console = stderr()
    console.print(f"[red]error:[/] {escape(error.message)}")
    for line in error.details.get("errors") or ():
        console.print(f"  {escape(str(line))}")
    raise typer.Exit(EXIT_INVALID if isinstance(error, InvalidInput) else EXIT_FAILED)


def reporting_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command so that any ShipyardError ends it with ``fail``."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ShipyardError as error:
            fail(error)

    return wrapper
