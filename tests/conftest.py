"""Test-wide set-up: a scratch home for everything, and the lab the integration tests use.

Every test session gets its own XDG state and cache directories under pytest's temporary
directory, so nothing is written outside it. The session's lab has an id of its own (its
namespaces and subnet differ from a user's lab) and is brought down, purged, at the end.
"""

from __future__ import annotations

import ctypes
import os
import secrets
from pathlib import Path

import pytest

PR_SET_CHILD_SUBREAPER = 36


def pytest_configure(config: pytest.Config) -> None:
    # Daemons started by `cozyops lab up` run detached; when a CLI subprocess that started them
    # exits, they are re-parented to us (instead of an init that may never reap them), and
    # `lab down` run from here reaps them: no zombie outlives the tests.
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


@pytest.fixture(scope="session", autouse=True)
def scratch_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    for variable, sub in (("XDG_STATE_HOME", "state"), ("XDG_CACHE_HOME", "cache")):
        os.environ[variable] = str(home / sub)
    os.environ.pop("COZYOPS_FLEET", None)
    os.environ.pop("COZYOPS_LAB_ID", None)
    os.environ.pop("COZYOPS_LAB_DIR", None)
    return home


def lab_prerequisites() -> str | None:
    from cozyops.lab import setup

    if os.geteuid() != 0:
        return "the lab needs root"
    missing = setup.missing_packages()
    if missing:
        return "missing Debian packages " + ", ".join(missing) + " (sudo cozyops lab setup)"
    return None


def require_lab() -> None:
    """Lab tests fail (not skip) without their prerequisites, unless COZYOPS_SKIP_LAB=1."""
    problem = lab_prerequisites()
    if problem:
        if os.environ.get("COZYOPS_SKIP_LAB") == "1":
            pytest.skip(problem)
        pytest.fail(problem)


def reap(pids: list[int]) -> None:
    """Collect processes re-parented to us (the subreaper) once they ended: no zombie is left."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def new_lab_id(prefix: str = "t") -> str:
    return f"{prefix}{secrets.token_hex(3)}"


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory, scratch_home: Path):
    """One lab for the test session, with its own id and directory."""
    require_lab()
    from cozyops.lab.lab import Lab

    instance = Lab.open(new_lab_id(), tmp_path_factory.mktemp("lab"))
    try:
        instance.up()
        yield instance
    finally:
        instance.down(purge=True)
