"""What every command shares: the consoles, JSON output, and turning bad input into a clean exit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console

__all__ = ["console", "errors_as_messages", "print_json", "stderr"]

console = Console()
stderr = Console(stderr=True)


def print_json(payload: Any) -> None:
    """Machine-readable output: one JSON document on stdout, nothing else."""
    typer.echo(json.dumps(payload, indent=2))


@contextmanager
def errors_as_messages(as_json: bool = False) -> Iterator[None]:
    """A bad value is the user's to fix: print the message, exit 2, no traceback. The message is one
    line however long (a terminal wraps it; a log or a pipe keeps it whole); with ``--json``
    (`as_json`) stdout also gets ``{"error": message}``, so a script reading it learns why."""
    try:
        yield
    except (ValueError, ImportError, FileNotFoundError) as exc:
        stderr.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        if as_json:
            print_json({"error": str(exc)})
        raise typer.Exit(2) from None
