"""Collect the fleet's status: each server over its transport (cozy-stack's admin and public APIs,
dpkg, df), the instances it lists against the fleet's, the certificates in the fleet's store, the
DNS plan's pending changes (the drift), and the last runs (provisioning and upgrade artifacts in
``<fleet>/.cozyops/runs/``, the journal in ``state.db``).

Servers are asked in parallel (a thread each, up to ``workers``); a server that cannot be reached
is reported as such, its instances as ``unreachable``; a part that fails (the DNS server, the
certificate store) is reported with its error and the rest still collected. Instances are listed
per server straight from its admin API; the instances package will take that over.
"""

from __future__ import annotations

import datetime
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cozyops import state
from cozyops.errors import CozyopsError
from cozyops.model import Fleet
from cozyops.stack.connect import connect
from cozyops.status.report import (
    CertState,
    DnsDrift,
    InstanceState,
    Report,
    RunState,
    ServerState,
    iso,
    parse_iso,
)

DATA_DIR = "/var/lib/cozy"  # cozy-stack's files (the Debian package's), else the root file system
RUNS_SHOWN = 12


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _disk(transport) -> dict | None:
    for path in (DATA_DIR, "/"):
        ran = transport.run(["df", "-B1", "--output=size,used,avail", path])
        lines = ran.stdout.decode(errors="replace").split("\n") if ran.returncode == 0 else []
        if len(lines) >= 2 and len(lines[1].split()) == 3:
            size, used, available = (int(word) for word in lines[1].split())
            return {"path": path, "size": size, "used": used, "available": available}
    return None


def server_state(fleet: Fleet, name: str) -> tuple[ServerState, list[InstanceState]]:
    """One server and the instances its cozy-stack lists (with their disk use)."""
    server = fleet.servers[name]
    placed = {i.domain for i in fleet.instances if i.server == name}
    found: list[InstanceState] = []
    try:
        with connect(fleet, server) as stack:
            package = stack.package_version()
            disk = _disk(stack.transport)
            status = stack.status_message(name)
            admin = stack.admin
            version = str(admin.version().get("version") or "")
            listed = admin.instances()
            for instance in sorted(listed, key=lambda i: i.domain):
                usage = {}
                try:
                    usage = admin.disk_usage(instance.domain)
                except CozyopsError:
                    pass
                used = int(usage["used"]) if str(usage.get("used", "")).isdigit() else None
                quota = instance.disk_quota or (int(usage["quota"]) if str(usage.get("quota", "")).isdigit() else 0)
                kind = ("blocked" if instance.blocked else "ready" if instance.onboarded else "onboarding")
                found.append(InstanceState(instance.domain, name, kind if instance.domain in placed else "unknown",
                                           instance.domain in placed, quota or None, used))
            known = {i.domain for i in listed}
            found += [InstanceState(domain, name, "missing") for domain in sorted(placed - known)]
            return ServerState(name, True, "", status, version, package, len(listed), disk), found
    except CozyopsError as error:
        message = str(error)
    except OSError as error:
        message = f"{type(error).__name__}: {error}"
    return (ServerState(name, False, message),
            [InstanceState(domain, name, "unreachable") for domain in sorted(placed)])


def certificates(fleet: Fleet, now: datetime.datetime) -> tuple[list[CertState], str]:
    """The fleet's certificates from its store (no network), soonest expiry first."""
    if fleet.acme is None:
        return [], ""
    from cozyops.tls.manager import CertManager

    try:
        manager = CertManager(fleet)
    except CozyopsError as error:
        return [], str(error)
    try:
        found = []
        for status in manager.statuses(manager.specs(), now):
            record = status.record
            days = round((record.not_after - now).total_seconds() / 86400, 1) if record else None
            found.append(CertState(status.spec.name, list(status.spec.domains), status.status,
                                   iso(record.not_before) if record else None,
                                   iso(record.not_after) if record else None, days, iso(status.next_renewal)))
        return sorted(found, key=lambda c: (c.days_left is not None, c.days_left or 0, c.name)), ""
    except CozyopsError as error:
        return [], str(error)
    finally:
        manager.close()


def dns_drift(fleet: Fleet) -> DnsDrift:
    """The changes the DNS plan would make now (records the zone lacks, or that differ)."""
    from cozyops.dns.manager import DnsManager

    try:
        manager = DnsManager(fleet)
        if manager.manual:
            return DnsDrift(False, "manual DNS: `cozyops dns check` compares the zone with the plan")
        plan = manager.plan()
    except CozyopsError as error:
        return DnsDrift(False, str(error))
    except OSError as error:
        return DnsDrift(False, f"{type(error).__name__}: {error}")
    changes = [{"action": c.action, "name": c.to_json(plan.zone)["name"], "type": c.rtype}
               for c in plan.record_changes]
    return DnsDrift(True, "", changes, len(plan.conflicts))


def _run_time(run_id: str) -> str:
    try:
        moment = datetime.datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return ""
    return iso(moment) or ""


def playbook_runs(runs_dir: Path) -> list[RunState]:
    """The runs ansible-runner left (newest first): their playbook, hosts (--limit) and outcome."""
    found = []
    if not runs_dir.is_dir():
        return found
    for folder in sorted((p for p in runs_dir.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True):
        try:
            outcome = (folder / "status").read_text().strip()
        except OSError:
            outcome = "running or interrupted"
        kind, hosts = "ansible", []
        try:
            command = json.loads((folder / "command").read_text()).get("command") or []
        except (OSError, ValueError):
            command = []
        for index, word in enumerate(command):
            if word.endswith(".yml") and "/" not in word:
                kind = {"site.yml": "provision", "upgrade.yml": "upgrade"}.get(word, word)
            if word == "--limit" and index + 1 < len(command):
                hosts = command[index + 1].split(",")
        found.append(RunState(folder.name, kind, _run_time(folder.name), outcome, hosts, str(folder)))
    return found


def journal_runs(state_dir: Path, limit: int = RUNS_SHOWN) -> list[RunState]:
    """The journal's newest entries (upgrade batches, DNS batches, ...), newest first."""
    if not (state_dir / "state.db").exists():
        return []
    journal = state.Journal(state_dir)
    try:
        entries = journal.entries()[-limit:]
    finally:
        journal.close()
    found = []
    for entry in reversed(entries):
        detail = entry["detail"] if isinstance(entry["detail"], dict) else {}
        found.append(RunState(str(detail.get("run") or entry["run"]), entry["kind"],
                              iso(parse_iso(entry["at"])) or "", entry["outcome"],
                              entry["subject"].split() if entry["kind"] == "upgrade" else [],
                              entry["error"] or entry["subject"]))
    return found


def collect(fleet: Fleet, *, now: datetime.datetime | None = None, dns: bool = True, workers: int = 8) -> Report:
    """Everything `cozyops status` shows, in one :class:`Report`."""
    now = now or now_utc()
    report = Report(fleet.name, fleet.zone, iso(now) or "")
    names = sorted(fleet.servers)
    if names:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(names)))) as pool:
            for server, instances in pool.map(lambda name: server_state(fleet, name), names):
                report.servers.append(server)
                report.instances += instances
    orphans = sorted({i.domain for i in fleet.instances if i.server not in fleet.servers})
    report.instances += [InstanceState(domain, "", "missing") for domain in orphans]
    report.certificates, problem = certificates(fleet, now)
    report.dns = dns_drift(fleet) if dns else DnsDrift(False, "not checked (--no-dns)")
    journal = journal_runs(fleet.state_dir)
    # An upgrade batch is in the journal with its health check, and its playbook run among the
    # runs: the journal's entry (which names the run) stands for both.
    told = {run.id for run in journal}
    runs = [run for run in playbook_runs(fleet.state_dir / "runs") if run.id not in told] + journal
    report.runs = sorted(runs, key=lambda r: r.at, reverse=True)[:RUNS_SHOWN]
    if problem:
        report.problems.append(f"certificates: {problem}")
    return report
