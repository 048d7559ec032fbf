"""Layer `cli`: tables for people, JSON for scripts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

FORMAT_OPTION = click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)


def emit_json(value: Any) -> None:
    import json  # here: most runs never print JSON, and --help stays short

    click.echo(json.dumps(value, indent=2, sort_keys=False))


def emit_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    line = "   ".join(f"{{:<{w}}}" for w in widths)
    click.echo(line.format(*headers).rstrip())
    click.echo(line.format(*("-" * w for w in widths)).rstrip())
    for row in rows:
        click.echo(line.format(*row).rstrip())


def warn(lines: list[str]) -> None:
    for line in lines:
        click.echo(f"warning: {line}", err=True)


def wants_json(argv: Sequence[str]) -> bool:
    """Whether the command line asks for ``--format json`` (read before click parsed it, so a
    failure in parsing is reported in the same format)."""
    for index, arg in enumerate(argv):
        if arg == "--format=json" or (arg == "--format" and argv[index + 1 : index + 2] == ["json"]):
            return True
    return False


def error_code(exc: BaseException) -> str:
    """A stable name for the kind of failure: ``NotSignedError`` -> ``not_signed``."""
    name = type(exc).__name__.removesuffix("Error").removesuffix("Exception") or "error"
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


def error_object(exc: BaseException, message: str, status: int) -> dict[str, Any]:
    return {"code": error_code(exc), "message": message, "exit_status": status}


def emit_error_json(exc: BaseException, message: str, status: int) -> None:
    """``{"error": {"code", "message", "exit_status"}}`` on stdout, so a script that asked for
    JSON always has JSON to parse."""
    emit_json({"error": error_object(exc, message, status)})
