"""Processes the lab starts: spawned detached, recorded by PID and start time, stopped by PID.

A PID alone can be reused once its process is gone; a PID together with the process's start time
(``/proc/PID/stat`` field 22) names one process for the life of the machine. ``stop`` never
signals a process whose identity does not match the record.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple


@dataclass(frozen=True)
class Proc:
    name: str
    pid: int
    start_time: int
    argv: tuple[str, ...]
    log: str

    def to_json(self) -> dict:
        data = asdict(self)
        data["argv"] = list(self.argv)
        return data

    @classmethod
    def from_json(cls, data: dict) -> Proc:
        return cls(data["name"], data["pid"], data["start_time"], tuple(data["argv"]), data["log"])


class Stat(NamedTuple):
    """The fields of ``/proc/PID/stat`` that cozyops reads."""

    state: str
    ppid: int
    session: int
    start_time: int


def stat(pid: int) -> Stat | None:
    """The process's state, parent, session and start time; None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return Stat(fields[0], int(fields[1]), int(fields[3]), int(fields[19]))


def start_time(pid: int) -> int:
    found = stat(pid)
    if found is None:
        raise ProcessLookupError(pid)
    return found.start_time


def alive(proc: Proc) -> bool:
    """True while the recorded process runs. A zombie has ended: it is not alive."""
    found = stat(proc.pid)
    return found is not None and found.state not in ("Z", "X") and found.start_time == proc.start_time


def pid_alive(pid: int) -> bool:
    found = stat(pid)
    return found is not None and found.state not in ("Z", "X")


def netns_argv(netns: str | None, argv: list[str]) -> list[str]:
    # `ip netns exec` execs the command: the PID we get is the daemon's own.
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def spawn(
    name: str,
    argv: list[str],
    log: Path,
    *,
    netns: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    pass_fds: tuple[int, ...] = (),
) -> tuple[Proc, subprocess.Popen]:
    """Start a daemon in its own session, its output appended to ``log``; ``pass_fds`` it inherits."""
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            netns_argv(netns, argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=full_env,
            cwd=cwd,
            pass_fds=pass_fds,
        )
    return Proc(name, popen.pid, start_time(popen.pid), tuple(argv), str(log)), popen


def _reap(proc: Proc) -> None:
    """Collect the exit status when the process is our child (no zombie left behind).

    Only the recorded process itself: a reused PID may be another child of ours.
    """
    found = stat(proc.pid)
    if found is None or found.start_time != proc.start_time:
        return
    try:
        os.waitpid(proc.pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop(proc: Proc, grace: float = 5.0) -> None:
    """TERM, then KILL after ``grace`` seconds; returns once the process has ended."""
    try:
        if not alive(proc):
            return
        os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while alive(proc) and time.monotonic() < deadline:
            _reap(proc)
            time.sleep(0.02)
        if alive(proc):
            os.kill(proc.pid, signal.SIGKILL)
        while alive(proc):
            _reap(proc)
            time.sleep(0.02)
    except ProcessLookupError:
        pass
    finally:
        _reap(proc)


def wait_gone(records: list[Proc], timeout: float = 10.0) -> list[Proc]:
    """Wait until ended processes are reaped (gone from /proc); return those still listed.

    A stopped daemon whose parent has exited is reaped by the machine's init, which may take a
    few seconds (some VM inits reap periodically); until then it is a zombie.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for proc in records:
            _reap(proc)
            found = stat(proc.pid)
            if found is not None and found.start_time == proc.start_time:
                left.append(proc)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def tail(path: str | Path, lines: int = 5) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])
