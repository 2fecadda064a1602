"""Network namespaces: create, address, delete, and run Python code inside one.

``ip`` (iproute2) does the plumbing. To run Python code in a namespace without a helper process,
``inside`` switches one worker thread into it with setns(2): on Linux a thread may change its own
network namespace, and sockets keep the namespace they were created in.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cozyops.errors import LabError

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000

T = TypeVar("T")


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def names(prefix: str = "") -> list[str]:
    try:
        return sorted(entry for entry in os.listdir(NETNS_DIR) if entry.startswith(prefix))
    except FileNotFoundError:
        return []


def ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise LabError("ip " + " ".join(args), result.stderr.strip() or f"exit {result.returncode}")


def create(name: str) -> None:
    ip("netns", "add", name)
    ip("-n", name, "link", "set", "lo", "up")


def delete(name: str) -> None:
    if exists(name):
        ip("netns", "delete", name)


def add_bridge(netns: str, bridge: str, addresses: list[str], prefix: int) -> None:
    ip("-n", netns, "link", "add", bridge, "type", "bridge")
    for address in addresses:
        ip("-n", netns, "addr", "add", f"{address}/{prefix}", "dev", bridge)
    ip("-n", netns, "link", "set", bridge, "up")


def inside(name: str, function: Callable[[], T]) -> T:
    """Run ``function`` in a thread that has entered the namespace ``name``; return its result."""
    outcome: dict[str, object] = {}

    def worker() -> None:
        try:
            fd = os.open(NETNS_DIR / name, os.O_RDONLY)
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise LabError(f"namespace {name}", f"cannot enter: {os.strerror(errno)}")
            finally:
                os.close(fd)
            outcome["value"] = function()
        except BaseException as error:  # handed back to the calling thread
            outcome["error"] = error

    thread = threading.Thread(target=worker, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, FileNotFoundError):
            raise LabError(f"namespace {name}", "does not exist") from error
        raise error  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
