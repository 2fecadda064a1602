"""Rolling upgrades of cozy-stack: ``playbooks/upgrade.yml`` a batch of servers at a time, through
the same ansible-runner path as provisioning, with a health check around every batch.

Before a batch, each of its servers is observed (:func:`observe`): cozy-stack's ``/status``, the
version it runs and the package installed, its instance count (admin API), and one instance's app
host through the server's nginx. A server already unhealthy is said so and upgraded all the same
(a roll-back or a fixed release is how it recovers); it has to be healthy afterwards. The batch is
then upgraded (one ansible-runner run, ``--limit`` the batch, its artifacts kept in
``<fleet>/.cozyops/runs/``) and observed again: ``/status`` answers, the running version is the
installed package (and ``--to``'s when given), the instance count is unchanged, the app host still
answers through nginx. The first batch with a failure (Ansible's or the health check's) stops the
run; the servers of later batches are not touched. Every batch is written to the fleet's journal
(kind ``upgrade``).

Nothing here prints: the caller gets task events, one-line reports and an :class:`UpgradeResult`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cozyops import state
from cozyops.errors import ConfigError, CozyopsError
from cozyops.model import Fleet, Instance, SubdomainMode
from cozyops.servers import provision as prov
from cozyops.stack.connect import connect

PLAYBOOK = "upgrade.yml"
JOURNAL_KIND = "upgrade"

Report = Callable[[str], None]


@dataclass(frozen=True)
class Health:
    """One server's cozy-stack, as seen at one moment."""

    server: str
    reachable: bool = True
    status: str = ""  # /status's "message" ("OK"), or what went wrong
    version: str = ""  # what /version says it runs
    package: str = ""  # the cozy-stack package installed (dpkg)
    instances: int | None = None  # the admin API's count
    app_host: str = ""  # the app host checked through nginx ("" when the server has no instance)
    app_status: int | None = None  # its HTTP status (None: no answer)
    error: str = ""  # why the server could not be observed

    def to_json(self) -> dict:
        return {"reachable": self.reachable, "status": self.status, "version": self.version,
                "package": self.package, "instances": self.instances, "app_host": self.app_host,
                "app_status": self.app_status, **({"error": self.error} if self.error else {})}


def app_answers(code: int | None) -> bool:
    """An app host answers through nginx: any 2xx or 3xx (cozy-stack sends a visitor without a
    session to its login page); 404 is an instance or app the stack does not know, 5xx nginx
    without its upstream."""
    return code is not None and 200 <= code < 400


def problems(health: Health) -> list[str]:
    """What is wrong with one observation on its own (pure)."""
    if not health.reachable:
        return [f"unreachable: {health.error}"]
    found = []
    if health.error:
        found.append(health.error)
    if health.status != "OK":
        found.append(f"/status: {health.status or 'no answer'}")
    if health.app_host and not app_answers(health.app_status):
        found.append(f"{health.app_host} through nginx: "
                     f"{health.app_status if health.app_status is not None else 'no answer'}")
    return found


def compare(before: Health, after: Health, to: str | None) -> list[str]:
    """What is wrong with one server after its upgrade (pure): its own problems (those it already
    had before said so), the version, and the instance count against a healthy starting point (a
    server that was unhealthy before, such as one being rolled back, only has to be healthy now)."""
    earlier = set(problems(before))
    found = [f"{problem} (already before the upgrade)" if problem in earlier else problem
             for problem in problems(after)]
    if not after.reachable:
        return found
    if to and after.package != to:
        found.append(f"package {after.package or 'missing'} installed, not {to}")
    if after.version and after.package and after.version != after.package:
        found.append(f"runs {after.version} while {after.package} is installed (not restarted?)")
    if not earlier and before.instances is not None and after.instances != before.instances:
        found.append(f"instances: {before.instances} before the upgrade, "
                     f"{after.instances if after.instances is not None else 'unknown'} after")
    return found


def batches(hosts: list[str], size: int) -> list[list[str]]:
    """``hosts`` in batches of ``size``, in the order given (pure)."""
    if size < 1:
        raise ConfigError("--batch", f"must be 1 or more, not {size}")
    return [hosts[i:i + size] for i in range(0, len(hosts), size)]


def app_host(fleet: Fleet, instance: Instance) -> str:
    """The host name of the instance's first app (nested ``drive.alice.ZONE``, flat ``alice-drive.ZONE``)."""
    app = instance.apps[0] if instance.apps else "home"
    if fleet.subdomains == SubdomainMode.FLAT:
        first, _, rest = instance.domain.partition(".")
        return f"{first}-{app}.{rest}"
    return f"{app}.{instance.domain}"


def probe_instance(fleet: Fleet, server: str, known: set[str] | None = None) -> Instance | None:
    """The fleet's instance whose app host is checked on ``server``: the first (by domain) that the
    server's cozy-stack knows (all of the fleet's on that server when ``known`` is None)."""
    for instance in sorted(fleet.instances, key=lambda i: i.domain):
        if instance.server == server and (known is None or instance.domain in known):
            return instance
    return None


CURL_APP = ["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20"]


def observe(fleet: Fleet, name: str, probe: str | None = None) -> Health:
    """Observe one server through its transport: dpkg, the admin and public APIs, nginx (curl on the
    server, with the app host resolved to its loopback). ``probe``: the app host to check (default:
    the first of the fleet's instances on the server that its stack knows)."""
    server = fleet.servers[name]
    try:
        with connect(fleet, server) as stack:
            package = stack.package_version()
            status = stack.status_message(name)
            admin = stack.admin
            version = str(admin.version().get("version") or "")
            domains = {instance.domain for instance in admin.instances()}
            host = probe
            if host is None:
                chosen = probe_instance(fleet, name, domains)
                host = app_host(fleet, chosen) if chosen else ""
            expected = [i.domain for i in fleet.instances if i.server == name]
            error = ""
            if expected and not domains.intersection(expected):
                error = (f"cozy-stack knows none of the fleet's {len(expected)} instance(s) on this server "
                         f"({', '.join(sorted(expected)[:3])}{', ...' if len(expected) > 3 else ''})")
            code = None
            if host:
                curl = stack.transport.run([*CURL_APP, "--resolve", f"{host}:443:127.0.0.1", f"https://{host}/"])
                text = curl.stdout.decode(errors="replace").strip()
                code = int(text) if text.isdigit() and text != "000" else None
            return Health(name, True, status, version, package, len(domains), host, code, error)
    except CozyopsError as error:
        return Health(name, False, error=str(error))
    except OSError as error:
        return Health(name, False, error=f"{type(error).__name__}: {error}")


@dataclass
class BatchOutcome:
    number: int
    hosts: list[str]
    before: dict[str, Health] = field(default_factory=dict)
    after: dict[str, Health] = field(default_factory=dict)
    run: str | None = None
    # host -> what failed ("" key: the batch as a whole)
    failures: dict[str, list[str]] = field(default_factory=dict)
    stage: str = "health"  # where it stopped: ansible, health
    warnings: dict[str, list[str]] = field(default_factory=dict)  # host -> problems before the upgrade

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict:
        return {"batch": self.number, "hosts": self.hosts, "run": self.run, "ok": self.ok,
                **({"stage": self.stage, "failures": self.failures} if self.failures else {}),
                **({"unhealthy_before": self.warnings} if self.warnings else {}),
                "before": {h: o.to_json() for h, o in self.before.items()},
                "after": {h: o.to_json() for h, o in self.after.items()}}


@dataclass
class UpgradeResult:
    to: str | None
    batches: list[BatchOutcome]
    untouched: list[str]
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return any(not b.ok for b in self.batches)

    @property
    def stopped_at(self) -> BatchOutcome | None:
        return next((b for b in self.batches if not b.ok), None)

    def to_json(self) -> dict:
        stop = self.stopped_at
        return {"to": self.to, "ok": not self.failed, "batches": [b.to_json() for b in self.batches],
                "untouched": self.untouched,
                **({"stopped": {"batch": stop.number, "stage": stop.stage, "failures": stop.failures}}
                   if stop else {})}


Observe = Callable[[Fleet, str, "str | None"], Health]


def extravars(to: str | None) -> dict:
    """What the batch's run is told: all of the batch at once; a version (a roll-back allowed)."""
    found: dict = {"cozy_upgrade_batch": "100%"}
    if to:
        found |= {"cozy_stack_version": to, "cozy_stack_allow_downgrade": True}
    return found


def upgrade(
    fleet: Fleet,
    hosts: list[str] | None = None,
    *,
    to: str | None = None,
    batch: int = 1,
    pause: float = 0.0,
    keep: int = prov.DEFAULT_KEEP,
    progress: prov.Progress = lambda _: None,
    report: Report = lambda _: None,
    observe: Observe = observe,
    sleep: Callable[[float], None] = time.sleep,
    playbook_dir=None,
) -> UpgradeResult:
    """Upgrade cozy-stack on ``hosts`` (default: every server), ``batch`` at a time, ``pause``
    seconds between batches; stop at the first batch that fails."""
    targets = prov.hosts_to_run(fleet, hosts)
    groups = batches(targets, batch)
    if pause < 0:
        raise ConfigError("--pause", f"must be 0 or more, not {pause}")
    started = time.monotonic()
    done: list[BatchOutcome] = []
    with state.fleet_lock(fleet.state_dir, fleet.name, "server upgrade"):
        journal = state.Journal(fleet.state_dir)
        try:
            for number, group in enumerate(groups, 1):
                if number > 1 and pause:
                    report(f"pausing {pause:g} s before batch {number}")
                    sleep(pause)
                outcome = _batch(fleet, number, len(groups), group, to, keep, progress, report, observe,
                                 playbook_dir)
                done.append(outcome)
                first = next(iter(outcome.failures.values()), [""])
                journal.record(JOURNAL_KIND, " ".join(group), "ok" if outcome.ok else "failed", len(group),
                               None if outcome.ok else "; ".join(first)[:500],
                               {"batch": number, "of": len(groups), "to": to, "run": outcome.run,
                                "stage": outcome.stage if not outcome.ok else None,
                                "failures": outcome.failures,
                                "after": {h: o.to_json() for h, o in outcome.after.items()}})
                if not outcome.ok:
                    break
        finally:
            journal.close()
    touched = {host for outcome in done for host in outcome.hosts}
    untouched = [host for host in targets if host not in touched]
    return UpgradeResult(to, done, untouched, time.monotonic() - started)


def _batch(fleet: Fleet, number: int, total: int, group: list[str], to: str | None, keep: int,
           progress: prov.Progress, report: Report, observe: Observe, playbook_dir) -> BatchOutcome:
    outcome = BatchOutcome(number, group)
    report(f"batch {number}/{total}: {', '.join(group)}: checking before the upgrade")
    for host in group:
        outcome.before[host] = health = observe(fleet, host, None)
        found = problems(health)
        if found:  # upgraded all the same (a roll-back, a fix): it must be healthy afterwards
            outcome.warnings[host] = found
            report(f"batch {number}/{total}: {host} is unhealthy before its upgrade: {'; '.join(found)}")
    report(f"batch {number}/{total}: upgrading {', '.join(group)}")
    result = prov.run_playbook(fleet, PLAYBOOK, group, extravars=extravars(to), keep=keep, progress=progress,
                               playbook_dir=playbook_dir)
    outcome.run = result.run
    for host, summary in result.hosts.items():
        if summary.unreachable or summary.failed:
            reasons = [f"{f.status} at task {f.task!r}: {f.message}" for f in summary.failures]
            outcome.failures[host] = reasons or [f"{'unreachable' if summary.unreachable else 'failed'} "
                                                 f"(see {result.artifacts})"]
    if result.failed and not outcome.failures:
        outcome.failures[""] = [f"ansible-playbook ended {result.status} (see {result.artifacts})"]
    if outcome.failures:
        outcome.stage = "ansible"
        return outcome
    report(f"batch {number}/{total}: checking {', '.join(group)} after the upgrade")
    for host in group:
        before = outcome.before[host]
        outcome.after[host] = after = observe(fleet, host, before.app_host or None)
        found = compare(before, after, to)
        if found:
            outcome.failures[host] = found
    return outcome
