"""The daily certificate renewal `cozyops install` sets up: ``cozyops cert renew --deploy``.

- On the server itself (``--local``): a systemd timer where systemd runs (``/run/systemd/system``),
  else an ``/etc/cron.d`` entry (cron installed with apt when missing, as on a container without
  systemd);
- from the machine that holds the fleet (``--host``): the crontab line to add, installed in the
  invoking user's crontab only when asked. ``COZYOPS_CRONTAB`` names a file that stands for that
  crontab (the tests' scratch crontab: never the machine's own).

Each form is written only when it differs from what is there: a second install changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cozyops import files
from cozyops.errors import CozyopsError

CRONTAB_ENV = "COZYOPS_CRONTAB"
UNIT = "cozyops-renew"
SYSTEMD_DIR = Path("/etc/systemd/system")
CRON_D = Path("/etc/cron.d")
LOG = "/var/log/cozyops-renew.log"


@dataclass(frozen=True)
class Renewal:
    how: str  # systemd | cron.d | crontab | printed
    where: str  # the files or the crontab
    command: str
    changed: bool

    def to_json(self) -> dict:
        return {"how": self.how, "where": self.where, "command": self.command, "changed": self.changed}


def command(root: Path, executable: str | None = None) -> str:
    """The renewal command line, with this cozyops (its Python's ``-m cozyops``: it works from a
    virtual environment, a wheel install and a checkout alike)."""
    python = executable or sys.executable
    return f"{shlex.quote(python)} -m cozyops cert renew --deploy --fleet {shlex.quote(str(root))}"


def _minute_hour(root: Path) -> tuple[int, int]:
    """A fixed time of day per fleet (spreads the CA's load, as certbot's timer does)."""
    digest = int(hashlib.sha256(str(root).encode()).hexdigest(), 16)
    return digest % 60, 1 + (digest // 60) % 5


def cron_line(root: Path, user: str | None = None, executable: str | None = None) -> str:
    minute, hour = _minute_hour(root)
    who = f" {user}" if user else ""
    return f"{minute} {hour} * * *{who} {command(root, executable)}"


def marker(root: Path) -> str:
    return f"# cozyops: daily certificate renewal of the fleet {root}"


def systemd_units(root: Path, executable: str | None = None) -> dict[str, str]:
    service = (f"[Unit]\nDescription=cozyops: renew and deploy the certificates of the fleet {root}\n"
               "After=network-online.target\nWants=network-online.target\n\n"
               f"[Service]\nType=oneshot\nExecStart={command(root, executable)}\n")
    timer = ("[Unit]\nDescription=cozyops: daily certificate renewal\n\n"
             "[Timer]\nOnCalendar=daily\nRandomizedDelaySec=1h\nPersistent=true\n\n"
             "[Install]\nWantedBy=timers.target\n")
    return {f"{UNIT}.service": service, f"{UNIT}.timer": timer}


def _write_if_changed(path: Path, text: str) -> bool:
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    files.write_atomic(path, text)
    return True


def _run(argv: list[str], what: str) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    except (OSError, subprocess.TimeoutExpired) as error:
        raise CozyopsError(what, f"{' '.join(argv)}: {error}") from None
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise CozyopsError(what, f"{' '.join(argv)} failed: {lines[-1] if lines else f'exit {result.returncode}'}")
    return result.stdout


def systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir()


def schedule_local(root: Path, name: str, executable: str | None = None) -> Renewal:
    """On this machine (the server): a systemd timer, else a cron.d entry."""
    if systemd_running():
        changed = False
        for unit, text in systemd_units(root, executable).items():
            changed |= _write_if_changed(SYSTEMD_DIR / unit, text)
        if changed:
            _run(["systemctl", "daemon-reload"], "renewal timer")
        enabled = subprocess.run(["systemctl", "is-enabled", "--quiet", f"{UNIT}.timer"]).returncode == 0
        if changed or not enabled:
            _run(["systemctl", "enable", "--now", f"{UNIT}.timer"], "renewal timer")
            changed = True
        return Renewal("systemd", str(SYSTEMD_DIR / f"{UNIT}.timer"), command(root, executable), changed)
    changed = False
    if shutil.which("cron") is None:
        _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "cron"], "renewal (cron)")
        changed = True
    path = CRON_D / f"cozyops-renew-{_file_name(name)}"
    text = (f"{marker(root)}\nSHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
            f"{cron_line(root, 'root', executable)} >>{LOG} 2>&1\n")
    changed |= _write_if_changed(path, text)
    if subprocess.run(["pgrep", "-x", "cron"], capture_output=True).returncode != 0:
        _run(["service", "cron", "start"], "renewal (cron)")
        changed = True
    return Renewal("cron.d", str(path), command(root, executable), changed)


def _file_name(name: str) -> str:
    # cron.d ignores files whose names hold anything but letters, digits, _ and -
    return "".join(char if char.isalnum() or char in "_-" else "_" for char in name)


def _read_crontab() -> str:
    scratch = os.environ.get(CRONTAB_ENV)
    if scratch:
        try:
            return Path(scratch).read_text()
        except FileNotFoundError:
            return ""
    if shutil.which("crontab") is None:
        raise CozyopsError("--schedule-renewal", "crontab is not installed on this machine",
                           "install cron (apt-get install cron), or schedule the printed command yourself")
    result = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    if result.returncode != 0:
        if "no crontab" in result.stderr:
            return ""
        raise CozyopsError("crontab -l", result.stderr.strip() or f"exit {result.returncode}")
    return result.stdout


def _write_crontab(text: str) -> None:
    scratch = os.environ.get(CRONTAB_ENV)
    if scratch:
        files.write_atomic(Path(scratch), text, 0o600)
        return
    result = subprocess.run(["crontab", "-"], input=text, capture_output=True, text=True)
    if result.returncode != 0:
        raise CozyopsError("crontab -", result.stderr.strip() or f"exit {result.returncode}")


def crontab_with(current: str, root: Path, executable: str | None = None) -> str:
    """The crontab with the fleet's renewal line (after its marker), replacing an older one."""
    mark, line = marker(root), cron_line(root, None, executable)
    lines = current.splitlines()
    if mark in lines:
        index = lines.index(mark)
        if index + 1 < len(lines):
            lines[index + 1] = line
        else:
            lines.append(line)
    else:
        lines += [mark, line]
    return "\n".join(lines) + "\n"


def schedule_crontab(root: Path, executable: str | None = None) -> Renewal:
    """In the invoking user's crontab (or ``$COZYOPS_CRONTAB``)."""
    current = _read_crontab()
    wanted = crontab_with(current, root, executable)
    changed = wanted != current
    if changed:
        _write_crontab(wanted)
    where = os.environ.get(CRONTAB_ENV) or "the crontab of the user running cozyops"
    return Renewal("crontab", where, command(root, executable), changed)


def printed(root: Path, executable: str | None = None) -> Renewal:
    return Renewal("printed", cron_line(root, None, executable), command(root, executable), False)
