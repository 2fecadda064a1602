"""Provisioning: ``playbooks/site.yml`` on the fleet's servers, through ansible-runner.

The fleet directory is Ansible's inventory as it is (hosts.yml, group_vars/), so what runs here
is what ``ansible-playbook -i <fleet> playbooks/site.yml`` runs. ansible-runner adds the forks
over hosts, the events (turned into :class:`TaskResult` for the caller's progress display) and the
artifacts of each run, kept under ``<fleet>/.cozyops/runs/<run id>/`` (the newest ``keep`` runs:
an audit log of what was done on which server). Ansible's own files stay in
``<fleet>/.cozyops/ansible/`` (never ``~/.ansible``).

Nothing here prints: the caller gets events and a :class:`ProvisionResult`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cozyops import paths, state
from cozyops.errors import ConfigError, CozyopsError
from cozyops.model import Fleet

PLAYBOOK = "site.yml"
DEFAULT_KEEP = 20
# Ansible's own per-result statuses, as the summary counts them.
STATUSES = ("ok", "changed", "failed", "unreachable", "skipped")


@dataclass(frozen=True)
class TaskResult:
    """One task's outcome on one host (an event of the run)."""

    host: str
    task: str
    status: str  # one of STATUSES
    message: str = ""


@dataclass
class HostSummary:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    failures: list[TaskResult] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"ok": self.ok, "changed": self.changed, "failed": self.failed, "unreachable": self.unreachable}


@dataclass
class ProvisionResult:
    run: str
    hosts: dict[str, HostSummary]
    artifacts: Path
    seconds: float
    status: str  # ansible-runner's: successful, failed, timeout, canceled

    @property
    def failed(self) -> bool:
        return self.status != "successful" or any(h.failed or h.unreachable for h in self.hosts.values())

    def to_json(self) -> dict:
        return {"hosts": {name: summary.to_json() for name, summary in self.hosts.items()}, "run": self.run}


Progress = Callable[[TaskResult], None]


def _message(result: dict) -> str:
    """The short reason Ansible gives for a failed or unreachable result (no_log results say so)."""
    if result.get("censored"):
        return str(result["censored"])
    for key in ("msg", "stderr", "module_stderr", "reason"):
        value = result.get(key)
        if value:
            text = str(value).strip()
            return text.splitlines()[-1][:300] if key != "msg" else text[:300]
    results = result.get("results")
    if isinstance(results, list):  # a loop: the first item that failed
        for item in results:
            if isinstance(item, dict) and item.get("failed"):
                return _message(item)
    return ""


EVENT_STATUS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}


def task_result(event: dict) -> TaskResult | None:
    """The :class:`TaskResult` a runner event carries, or None (other events)."""
    status = EVENT_STATUS.get(event.get("event", ""))
    data = event.get("event_data") or {}
    host = data.get("host")
    if status is None or not host:
        return None
    result = data.get("res") or {}
    if status == "ok" and result.get("changed"):
        status = "changed"
    if status == "failed" and data.get("ignore_errors"):
        status = "ok"
    message = _message(result) if status in ("failed", "unreachable") else ""
    return TaskResult(host, (data.get("task") or "").strip(), status, message)


def summarize(stats: dict | None, results: list[TaskResult], hosts: list[str]) -> dict[str, HostSummary]:
    """Per host counts from the run's final stats (Ansible's recap), failures from the events."""
    summary = {host: HostSummary() for host in hosts}
    stats = stats or {}
    for key, attribute in (("ok", "ok"), ("changed", "changed"), ("failures", "failed"),
                           ("dark", "unreachable"), ("skipped", "skipped")):
        for host, count in (stats.get(key) or {}).items():
            setattr(summary.setdefault(host, HostSummary()), attribute, int(count))
    for result in results:
        if result.status in ("failed", "unreachable"):
            summary.setdefault(result.host, HostSummary()).failures.append(result)
    return summary


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def prune_runs(runs: Path, keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` runs (by name: the id starts with its UTC time)."""
    if not runs.is_dir():
        return []
    found = sorted((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.name)
    removed = found[:-keep] if keep > 0 else found
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def _close_masters(control_dir: Path) -> None:
    """End the ssh connection masters the run left (ControlPersist), so no process outlives it."""
    if not control_dir.is_dir():
        return
    for socket_path in control_dir.iterdir():
        subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={socket_path}", "unused"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10, check=False)


def hosts_to_run(fleet: Fleet, wanted: list[str] | None) -> list[str]:
    """The servers named (all of the fleet's when none); an unknown name is an error naming it."""
    if not fleet.servers:
        raise ConfigError(f"{fleet.root / 'hosts.yml'}", "names no server (group cozy_servers)")
    if not wanted:
        return sorted(fleet.servers)
    unknown = [name for name in wanted if name not in fleet.servers]
    if unknown:
        raise ConfigError(f"{fleet.root / 'hosts.yml'}", f"has no server {', '.join(unknown)}",
                          "servers: " + ", ".join(sorted(fleet.servers)))
    return list(dict.fromkeys(wanted))


def provision(
    fleet: Fleet,
    hosts: list[str] | None = None,
    *,
    check: bool = False,
    diff: bool = False,
    forks: int | None = None,
    keep: int = DEFAULT_KEEP,
    progress: Progress = lambda _: None,
    playbook_dir: Path | None = None,
) -> ProvisionResult:
    """Run the site playbook on ``hosts`` (default: every server) of ``fleet``."""
    targets = hosts_to_run(fleet, hosts)
    with state.fleet_lock(fleet.state_dir, fleet.name, "server provision"):
        return run_playbook(fleet, PLAYBOOK, targets, check=check, diff=diff, forks=forks, keep=keep,
                            progress=progress, playbook_dir=playbook_dir)


def run_playbook(
    fleet: Fleet,
    playbook: str,
    targets: list[str],
    *,
    extravars: dict | None = None,
    check: bool = False,
    diff: bool = False,
    forks: int | None = None,
    keep: int = DEFAULT_KEEP,
    progress: Progress = lambda _: None,
    playbook_dir: Path | None = None,
) -> ProvisionResult:
    """One ansible-runner run of ``playbook`` limited to ``targets``, its artifacts kept as a run.
    The caller holds the fleet's lock."""
    import ansible_runner  # the runner and its Ansible cost time to import: only when provisioning

    project = playbook_dir or paths.data_dir("playbooks")
    work = fleet.state_dir / "ansible"
    runs = fleet.state_dir / "runs"
    control = work / "cp"
    for folder in (work, runs, control, work / "tmp", work / "runner"):
        folder.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id()
    results: list[TaskResult] = []

    def on_event(event: dict) -> bool:
        result = task_result(event)
        if result is not None:
            results.append(result)
            progress(result)
        return True

    cmdline = " ".join(flag for flag, on in (("--check", check), ("--diff", diff)) if on)
    env = {
        "ANSIBLE_HOME": str(work),
        "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        # the runner execs ansible-playbook: the one next to this Python first
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    }
    started = time.monotonic()
    try:
        runner = ansible_runner.run(
            private_data_dir=str(work / "runner"),
            artifact_dir=str(runs),
            ident=run_id,
            project_dir=str(project),
            playbook=playbook,
            # hosts.yml (its group_vars/ next to it): the directory itself would have Ansible
            # try instances.yml, secrets/ and the rest as inventories too.
            inventory=str(fleet.root / "hosts.yml"),
            limit=",".join(targets),
            forks=forks or len(targets),
            cmdline=cmdline or None,
            extravars=extravars or None,
            envvars=env,
            suppress_env_files=True,
            quiet=True,
            event_handler=on_event,
        )
    finally:
        _close_masters(control)
        prune_runs(runs, keep)
    if runner.rc == 127 or runner.status == "error":
        raise CozyopsError("ansible-playbook", f"could not run ({runner.status}, exit {runner.rc})",
                           f"see {runs / run_id / 'stdout'}")
    summary = summarize(runner.stats, results, targets)
    return ProvisionResult(run_id, summary, runs / run_id, time.monotonic() - started, runner.status)


def playbook_path() -> Path:
    return paths.data_dir("playbooks") / PLAYBOOK
