"""The `lrpilot` command line: a thin layer that calls the library and prints its results."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    """Entry point of the `lrpilot` script; says which extra to install if the CLI's are missing."""
    try:
        from lrpilot.cli._app import app
    except ImportError as exc:  # typer or rich missing
        print(f"lrpilot's command line needs typer and rich ({exc}): pip install 'lrpilot[cli]'", file=sys.stderr)
        raise SystemExit(1) from None
    from lrpilot.cli._output import run_as_script

    raise SystemExit(run_as_script(app, sys.argv[1:]))
