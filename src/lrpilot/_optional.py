"""Optional dependencies: import them where they are used, with an error that names the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import `module`, or raise an ImportError telling the user which lrpilot extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".", maxsplit=1)[0]
        raise ImportError(f"{purpose} needs {package}, which is not installed: pip install 'lrpilot[{extra}]'") from exc
