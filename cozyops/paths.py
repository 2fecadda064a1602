"""Where cozyops keeps things. Nothing is written anywhere else.

- state: ``$XDG_STATE_HOME/cozyops`` (default ``~/.local/state/cozyops``): labs, the log;
- cache: ``$XDG_CACHE_HOME/cozyops`` (default ``~/.cache/cozyops``): things that can be rebuilt;
- a fleet's own state: ``<fleet>/.cozyops/`` (git-ignored).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _xdg(variable: str, default: str) -> Path:
    value = os.environ.get(variable, "")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(value) if value and os.path.isabs(value) else Path.home() / default
    return base / "cozyops"


def state_dir() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state")


def cache_dir() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache")


def labs_dir() -> Path:
    return state_dir() / "labs"


def log_file() -> Path:
    return state_dir() / "logs" / "cozyops.log"


def fleet_state_dir(fleet: Path) -> Path:
    return fleet / ".cozyops"


def data_dir(name: str) -> Path:
    """A top-level data directory (playbooks, templates, inventories).

    In an installed distribution they live inside the package (``cozyops/_data/<name>``); in a
    checkout (editable install, tests) they are at the top of the repository.
    """
    installed = PACKAGE_DIR / "_data" / name
    if installed.is_dir():
        return installed
    checkout = PACKAGE_DIR.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"cozyops data directory {name!r} not found in {PACKAGE_DIR}")
