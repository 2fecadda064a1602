"""Test-wide set-up: a scratch home for everything, and the lab the integration tests use.

Every test session gets its own XDG state and cache directories under pytest's temporary
directory, so nothing is written outside it. The session's lab has an id of its own (its
namespaces and subnet differ from a user's lab) and is brought down, purged, at the end.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PR_SET_CHILD_SUBREAPER = 36
ZOMBIE_GRACE = 1.0  # seconds a zombie daemon is left to whoever spawned it


def _a_child_has_ended() -> bool:
    """Whether a child of ours waits to be reaped, left waiting (WNOWAIT): one system call, where a
    look at every process in /proc costs ~10 ms of CPU (a pytest worker spent a tenth of a core on
    it when it looked every 50 ms)."""
    try:
        return os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # no child at all
        return False


def _reap_adopted_daemons() -> None:
    """Reap, as an init would, the daemons re-parented to us once they end.

    Only zombie children that lead their own session (the lab starts its daemons that way; the
    tests' own subprocesses do not) are collected, so subprocess keeps its exit statuses; and only
    once they have been zombies for a second: a daemon this very process spawned (procs.spawn, its
    own session too) and that ended at once is left to the code that spawned it, which reads its
    /proc entry and waits for it (reaped at once, it raised ProcessLookupError there).
    """
    from cozyops.lab import procs

    me = os.getpid()
    seen: dict[int, float] = {}
    while True:
        if not seen and not _a_child_has_ended():
            time.sleep(0.05)
            continue
        zombies = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            found = procs.stat(int(entry))
            if found and found.state == "Z" and found.ppid == me and found.session == int(entry):
                pid = int(entry)
                zombies.add(pid)
                if time.monotonic() - seen.setdefault(pid, time.monotonic()) < ZOMBIE_GRACE:
                    continue
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
        seen = {pid: since for pid, since in seen.items() if pid in zombies}
        time.sleep(0.05)


# `./dev test` hands test files to its workers (pytest-xdist, --dist loadfile, --no-loadscope-reorder)
# in collection order. The long files (a lab of their own, hosts provisioned) come first, longest
# first, so that the many short files fill in at the end rather than one long file running alone
# while the other workers idle. Longest by the durations `./dev test` printed in the CI runs of
# 2026-12-05; a file not listed keeps its place after them (integration, contract, then unit).
SLOW_FILES_FIRST = (
    "tests/integration/test_instances.py",
    "tests/integration/test_lab.py",
    "tests/integration/test_provision.py",
    "tests/integration/test_install.py",
    "tests/integration/test_move.py",
    "tests/integration/test_upgrade.py",
    "tests/integration/test_stack.py",
    "tests/integration/test_status.py",
    "tests/integration/test_tls_http01.py",
    "tests/integration/test_install_local.py",
    "tests/integration/test_v2_import.py",
    "tests/integration/test_v2_couchdb.py",
    "tests/integration/test_fleet_ssh.py",
    "tests/integration/test_docs.py",
)


THEN = ("tests/integration/", "tests/contract/")  # and last, the rest: the unit tests


def file_rank(nodeid: str) -> tuple[int, int]:
    """Where a test's file comes in the run: the slow files by SLOW_FILES_FIRST, then the others."""
    path = nodeid.split("::", 1)[0]
    if path in SLOW_FILES_FIRST:
        return 0, SLOW_FILES_FIRST.index(path)
    for rank, prefix in enumerate(THEN, start=1):
        if path.startswith(prefix):
            return rank, 0
    return len(THEN) + 1, 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: file_rank(item.nodeid))  # stable: a file's tests keep their order


def pytest_configure(config: pytest.Config) -> None:
    # Daemons started by `cozyops lab up` run detached; when a CLI subprocess that started them
    # exits, they are re-parented to us (instead of the machine's init) and reaped here, so that
    # `lab down` sees them vanish at once and no zombie outlives the tests.
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    threading.Thread(target=_reap_adopted_daemons, name="reaper", daemon=True).start()


@pytest.fixture(scope="session", autouse=True)
def scratch_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cozyops.lab import aptrepo, jsclient, pouchdb, rootfs

    # The hosts' root filesystem that `cozyops lab setup` built (./dev test runs it first) is
    # used read-only, as the lower layer of the hosts' overlays; nothing is written there.
    os.environ.setdefault("COZYOPS_ROOTFS_CACHE", str(rootfs.cache_root()))
    # Likewise pouchdb-server's node modules, which `lab setup` installed with npm.
    os.environ.setdefault("COZYOPS_POUCHDB_CACHE", str(pouchdb.cache_root()))
    # And cozy-stack-client's, for the double's conformance run.
    os.environ.setdefault("COZYOPS_JSCLIENT_CACHE", str(jsclient.cache_root()))
    # And the lab's apt repository (cozy-stack and couchdb packages), which `lab setup` built.
    os.environ.setdefault("COZYOPS_APTREPO_CACHE", str(aptrepo.cache_root()))
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
    from cozyops.lab import rootfs

    missing = setup.missing_packages()
    if missing:
        return "missing Debian packages " + ", ".join(missing) + " (sudo cozyops lab setup)"
    if not rootfs.built(rootfs.path()):
        return f"the hosts' root filesystem is not built in {rootfs.cache_root()} (sudo cozyops lab setup)"
    from cozyops.lab import aptrepo

    if aptrepo.find() is None:
        return f"the lab's apt repository is not built in {aptrepo.cache_root()} (sudo cozyops lab setup)"
    return None


def require_lab() -> None:
    """Lab tests fail (not skip) without their prerequisites, unless COZYOPS_SKIP_LAB=1."""
    problem = lab_prerequisites()
    if problem:
        if os.environ.get("COZYOPS_SKIP_LAB") == "1":
            pytest.skip(problem)
        pytest.fail(problem)


def new_lab_id(prefix: str = "t") -> str:
    return f"{prefix}{secrets.token_hex(3)}"


@contextlib.contextmanager
def own_lab(tmp_path_factory: pytest.TempPathFactory, prefix: str, prepare=None, **up) -> Iterator:
    """A lab of a test module's own (id ``<prefix><hex>``, directory ``<prefix>lab<N>``): ``prepare(lab)``
    before it comes up, ``Lab.up(**up)``, purged at the end."""
    require_lab()
    from cozyops.lab.lab import Lab

    instance = Lab.open(new_lab_id(prefix), tmp_path_factory.mktemp(f"{prefix}lab"))
    try:
        if prepare is not None:
            prepare(instance)
        instance.up(**up)
        yield instance
    finally:
        instance.down(purge=True)


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
