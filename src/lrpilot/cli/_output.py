"""What every command shares: the consoles, JSON output, and turning bad input into a clean exit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

__all__ = [
    "EXIT_FAILED",
    "console",
    "errors_as_messages",
    "exit_on",
    "fail_on",
    "print_json",
    "run_as_script",
    "stderr",
]

console = Console()
stderr = Console(stderr=True)


EXIT_FAILED = 1
"""The status of a command whose outcome is one its ``--fail-on`` names, for CI: a linter's 1 on
findings (ruff, mypy), ``npm audit --audit-level``'s on advisories. Bad input stays 2, and without
``--fail-on`` every outcome is 0, as before."""


def fail_on(command: str, value: str | None, outcomes: tuple[str, ...], good: str) -> frozenset[str]:
    """The outcomes ``--fail-on`` names: a comma-separated list of `outcomes`, or ``any`` for every
    one but `good`; none when not given."""
    from lrpilot import _validate as check

    if value is None:
        return frozenset()
    names = [n.strip().replace("-", "_") for n in value.split(",") if n.strip()]  # gave-up: gave_up
    if not names:
        raise ValueError(f"{command}: --fail-on must name 'any' or some of {list(outcomes)}, got {value!r}")
    chosen = {check.choice(command, "--fail-on", n, ("any", *outcomes)) for n in names}
    if "any" in chosen:
        chosen = (chosen - {"any"}) | {o for o in outcomes if o != good}
    return frozenset(chosen)


def exit_on(command: str, what: str, outcome: str, failing: frozenset[str]) -> None:
    """Exit with `EXIT_FAILED` and one line on stderr when `outcome` (the command's `what`) is one of `failing`."""
    if outcome in failing:
        stderr.print(
            f"{command}: {what} {outcome!r} is one of --fail-on ({', '.join(sorted(failing))}): exit {EXIT_FAILED}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_FAILED)


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


def run_as_script(app: typer.Typer, args: list[str]) -> int:
    """`app` on `args` as the console script runs it; its exit status. Input typer itself refuses (a
    value of the wrong type, an unknown option or command, a missing option) is answered as
    `errors_as_messages` answers lrpilot's own: one line on stderr, ``{"error": ...}`` on stdout
    with ``--json``, status 2 (typer drew a box over several lines)."""
    try:
        status = app(args, standalone_mode=False)
    except typer.TyperException as exc:
        code: int = getattr(exc, "exit_code", 2)
        if type(exc).__name__ == "NoArgsIsHelpError":  # `lrpilot` alone: typer printed the help already
            return code
        context = getattr(exc, "ctx", None)
        path = "lrpilot" if context is None else context.command_path
        root = "" if context is None else (context.find_root().info_name or "")
        name = path[len(root) :].strip() or path  # "schedule", "tune worker"; the root's own name
        message = f"{name}: {exc.format_message()} (see '{path} --help')"
        stderr.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        if "--json" in args:
            print_json({"error": message})
        return code
    except typer.Abort:
        stderr.print("Aborted.", highlight=False)
        return 1
    return status if isinstance(status, int) else 0
