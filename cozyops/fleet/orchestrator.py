"""One plan over the whole fleet, and its apply in dependency order.

The plan is a list of resource-neutral changes (``cozyops.plan.Change``) of five kinds:

- ``server``: provisioning (ansible-playbook in check mode: how many tasks would change). A
  server whose provisioning inputs (the roles' files, its variables) are those of its last good
  run is not checked again (``check_servers`` forces it): a quiet fleet plans quickly;
- ``instance``: create, update (the fields before and after), delete: only instances the fleet
  owns (it created or adopted them: ``state.Owned``); an instance on one of its servers it does
  not own is listed as "not in the fleet" and never touched;
- ``dns``: the DNS planner's record changes (``cozyops.dns``), with its own ownership marks;
- ``certificate``: issue, renew (``cozyops.tls``), and deploy where a server lacks the current one;
- ``site``: the nginx sites (``cozyops.instances.site``), only those marked with the fleet's name.

One checksum covers them all: ``apply --checksum C`` applies only the plan that was reviewed.
Safety as DNS has it: deleting or updating more owned instances (or sites) than the thresholds
(``cozy_dns.unsafe_changes`` and ``unsafe_percent``) needs ``force``; the DNS plan keeps its own.

``apply`` goes server, instance, DNS, site, certificate (a site needs the instance's names to
answer, a certificate needs the site for HTTP-01 and to be verified once deployed), servers at
once and instances per server with a bound, collects each item's failure, skips only what depends
on a failed item (an instance on a failed server, the site and certificate of a failed instance).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cozyops import paths, state
from cozyops.errors import CozyopsError, UnsafePlanError
from cozyops.instances import lifecycle, site
from cozyops.model import Fleet, Instance
from cozyops.plan import CREATE, DELETE, UPDATE, Change, Safety
from cozyops.plan import Plan as NeutralPlan
from cozyops.stack.connect import StackClients, connect

PER_SERVER = 8  # instances created at once on one server
Progress = Callable[[str, int, int], None]


def _quiet(stage: str, done: int, total: int) -> None:
    pass


# -- what the servers hold -------------------------------------------------------------------------


@dataclass
class ServerView:
    """One server as the plan saw it."""

    name: str
    instances: dict[str, lifecycle.Observed] = field(default_factory=dict)
    sites: dict[str, site.Found] = field(default_factory=dict)
    error: str | None = None  # unreachable, or cozy-stack refused
    provisioning: str = "unchanged"  # unchanged (inputs as at its last good run), checked, failed
    tasks: int = 0  # tasks Ansible would change


def _view(fleet: Fleet, name: str, deploy_dir: str) -> ServerView:
    view = ServerView(name)
    try:
        with connect(fleet, fleet.servers[name]) as stack:
            view.instances = lifecycle.observe(stack.admin)
            view.sites = site.observe(stack.transport, deploy_dir)
    except CozyopsError as error:
        view.error = str(error)
    return view


def observe(fleet: Fleet, servers: list[str] | None = None, parallel: int = 16) -> dict[str, ServerView]:
    """Every server's instances and sites, servers asked in parallel."""
    names = sorted(servers if servers is not None else fleet.servers)
    deploy_dir = fleet.acme.deploy_dir if fleet.acme else "/etc/ssl/cozyops"
    if not names:
        return {}
    with ThreadPoolExecutor(max_workers=min(parallel, len(names))) as pool:
        return dict(zip(names, pool.map(lambda n: _view(fleet, n, deploy_dir), names), strict=True))


# -- provisioning inputs ---------------------------------------------------------------------------


def roles_digest() -> str:
    """sha256 of the playbooks' files (names and contents)."""
    root = paths.data_dir("playbooks")
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def server_digest(roles: str, variables: dict[str, Any]) -> str:
    """The provisioning inputs of one server: the roles and its variables (as Ansible sees them)."""
    text = json.dumps(variables, sort_keys=True, default=str)
    return hashlib.sha256(f"{roles}\n{text}".encode()).hexdigest()[:32]


# -- the plan --------------------------------------------------------------------------------------


@dataclass
class FleetPlan:
    fleet: str
    changes: list[Change] = field(default_factory=list)
    views: dict[str, ServerView] = field(default_factory=dict)
    foreign: list[dict] = field(default_factory=list)  # instances on its servers it does not own
    conflicts: list[dict] = field(default_factory=list)  # wanted but held by someone else
    dns: Any = None  # cozyops.dns.plan.Plan
    certs: Any = None  # cozyops.tls.manager.CertPlan
    digests: dict[str, str] = field(default_factory=dict)  # server -> provisioning inputs
    owned_instances: int = 0
    owned_sites: int = 0
    moves: list[dict] = field(default_factory=list)  # journaled moves: under way, or their source kept

    @property
    def checksum(self) -> str:
        return NeutralPlan(self.changes).checksum

    def of(self, kind: str, action: str | None = None) -> list[Change]:
        return [c for c in self.changes if c.kind == kind and (action is None or c.action == action)]

    def counts(self) -> dict[str, dict[str, int]]:
        kinds = ("server", "instance", "moved", "dns", "certificate", "site")
        return {kind: NeutralPlan(self.of(kind)).counts() for kind in kinds}

    @property
    def empty(self) -> bool:
        return not self.changes

    def unsafe(self, safety: Safety) -> str | None:
        for kind, owned in (("instance", self.owned_instances), ("site", self.owned_sites)):
            risky = len(self.of(kind, DELETE)) + len(self.of(kind, UPDATE))
            verdict = safety.verdict(risky, owned)
            if verdict:
                return f"{kind}s: " + verdict.replace("records", f"{kind}s")
        if self.dns is not None:
            verdict = self.dns.unsafe(safety)
            if verdict:
                return f"DNS: {verdict}"
        return None

    def to_json(self) -> dict:
        return {
            "fleet": self.fleet,
            "checksum": self.checksum,
            "counts": self.counts(),
            "changes": [{"kind": c.kind, "action": c.action, "key": list(c.key), "before": c.before, "after": c.after}
                        for c in self.changes if c.kind != "dns"],
            "dns": self.dns.to_json() if self.dns is not None else None,
            "servers": {name: {"provisioning": view.provisioning, "tasks": view.tasks, "error": view.error,
                               "instances": len(view.instances)} for name, view in self.views.items()},
            "not_in_fleet": self.foreign,
            "conflicts": self.conflicts,
            "moves": self.moves,
        }


class Orchestrator:
    """Plan and apply one fleet (loaded once by the CLI, handed down)."""

    def __init__(self, fleet: Fleet, host_vars: dict[str, dict] | None = None) -> None:
        self.fleet = fleet
        self.only: set[str] | None = None
        self.host_vars = host_vars or {}
        self.dns_manager = None
        self.cert_manager = None

    @contextlib.contextmanager
    def locked(self, command: str = "") -> Any:
        with state.fleet_lock(self.fleet.state_dir, self.fleet.name, command, reentrant=True):
            yield

    def close(self) -> None:
        if self.cert_manager is not None:
            self.cert_manager.close()

    def _dns(self):
        if self.dns_manager is None:
            from cozyops.dns.manager import DnsManager

            self.dns_manager = DnsManager(self.fleet)
        return self.dns_manager

    def _certs(self):
        if self.cert_manager is None and self.fleet.acme is not None:
            from cozyops.tls.manager import CertManager

            self.cert_manager = CertManager(self.fleet)
        return self.cert_manager

    @property
    def safety(self) -> Safety:
        return Safety(self.fleet.dns.unsafe_changes, self.fleet.dns.unsafe_percent)

    # -- plan ----------------------------------------------------------------------------------

    def plan(self, check_servers: bool = False, progress: Progress = _quiet, dns: bool = True,
             certificates: bool = True, only: set[str] | None = None) -> FleetPlan:
        """The fleet's plan; ``only``: the plan of these instances alone (their server's state,
        their site and certificate; the zone's DNS plan; no provisioning), for `instance add|rm|modify`."""
        fleet = self.fleet
        self.only = only
        result = FleetPlan(fleet.name)
        with state.Owned(fleet.state_dir) as owned:
            instances = owned.all("instance")
        if only is None:
            servers = None
        else:
            servers = sorted({i.server for i in fleet.instances if i.domain in only}
                             | {instances[d]["server"] for d in only if d in instances and
                                instances[d]["server"] in fleet.servers})
        progress("servers", 0, len(fleet.servers))
        result.views = observe(fleet, servers)
        progress("servers", len(fleet.servers), len(fleet.servers))
        if only is None:
            self._plan_servers(result, check_servers)
        self._plan_instances(result, instances)
        if only is None:
            self._plan_moves(result)
        if dns:
            result.dns = self._dns().plan()
            result.changes += result.dns.neutral()
        self._plan_sites(result)
        if certificates and fleet.acme is not None:
            self._plan_certificates(result)
        return result

    def _plan_servers(self, result: FleetPlan, check: bool) -> None:
        if not self.fleet.servers:
            return
        roles = roles_digest()
        with state.Owned(self.fleet.state_dir) as owned:
            recorded = {name: owned.server_digest(name) for name in self.fleet.servers}
        result.digests = {name: server_digest(roles, self.host_vars.get(name, {})) for name in self.fleet.servers}
        to_check = sorted(name for name in self.fleet.servers
                          if check or recorded[name] != result.digests[name])
        if not to_check:
            return
        from cozyops.servers import provision

        run = provision.provision(self.fleet, to_check, check=True)
        for name in to_check:
            view = result.views[name]
            summary = run.hosts.get(name)
            if summary is None or summary.failed or summary.unreachable:
                view.provisioning = "failed"
                why = "; ".join(f"{f.task}: {f.message}" for f in (summary.failures if summary else [])) or "no result"
                result.changes.append(Change("server", UPDATE, (name,), {"check": "failed"}, {"error": why[:300]}))
                continue
            view.provisioning, view.tasks = "checked", summary.changed
            if summary.changed:
                result.changes.append(Change("server", UPDATE if recorded[name] else CREATE, (name,),
                                             {"inputs": recorded[name]},
                                             {"inputs": result.digests[name], "tasks": summary.changed}))
            else:  # nothing to do: its inputs are now those of a good state (an observation, not a change)
                with state.Owned(self.fleet.state_dir) as owned:
                    owned.set_server_digest(name, result.digests[name])

    def _plan_instances(self, result: FleetPlan, owned: dict[str, dict]) -> None:
        fleet = self.fleet
        wanted = {instance.domain: instance for instance in fleet.instances
                  if self.only is None or instance.domain in self.only}
        if self.only is not None:
            owned = {domain: record for domain, record in owned.items() if domain in self.only}
        where: dict[str, str] = {}
        for name, view in result.views.items():
            for domain in view.instances:
                where.setdefault(domain, name)
        result.owned_instances = len(owned)
        for domain, instance in sorted(wanted.items()):
            view = result.views[instance.server]
            if view.error:
                continue  # reported with the server
            found = view.instances.get(domain)
            record = owned.get(domain)
            if found is None:
                elsewhere = where.get(domain)
                if elsewhere is not None:
                    result.conflicts.append({"kind": "instance", "name": domain, "server": elsewhere,
                                             "why": f"is on server {elsewhere}, wanted on {instance.server}"
                                             + ("" if record else " (and not the fleet's)")})
                    continue
                result.changes.append(Change("instance", CREATE, (domain,), None, _wanted(instance)))
                continue
            if record is None:
                result.conflicts.append({"kind": "instance", "name": domain, "server": instance.server,
                                         "why": "exists on the server but the fleet does not own it "
                                                "(`cozyops instance adopt` makes it the fleet's)"})
                continue
            diff = lifecycle.differences(instance, found, record["settings"])
            if diff:
                result.changes.append(Change("instance", UPDATE, (domain,), {k: v[0] for k, v in diff.items()},
                                             {k: v[1] for k, v in diff.items()}))
        for domain, record in sorted(owned.items()):
            if domain in wanted:
                continue
            view = result.views.get(record["server"])
            if view is None or view.error or domain not in view.instances:
                continue  # gone already (its record goes at apply)
            found = view.instances[domain]
            result.changes.append(Change("instance", DELETE, (domain,), {"server": record["server"],
                                                                          **found.fields()}, None))
        for name, view in sorted(result.views.items()):
            for domain, found in sorted(view.instances.items()):
                if self.only is None and domain not in owned and domain not in wanted:
                    result.foreign.append({"domain": domain, "server": name, "blocked": found.blocked})

    def _plan_moves(self, result: FleetPlan) -> None:
        """The moves journaled in the fleet's state. One under way is shown (`cozyops instance move`
        continues it, never `apply`); a finished move's source, kept blocked (MOVED) for its keep
        days, is removed once they are over (a "moved" change: the move asked for it, so it does not
        count against the removal thresholds)."""
        from cozyops.instances import move

        at = move.now()
        for found in move.moves(self.fleet):
            entry = {"domain": found["domain"], "source": found["source"], "target": found["target"],
                     "status": found["status"], "steps_done": found["steps"], "keep_until": found["keep_until"]}
            if found["status"] == "started":
                entry["next"] = next((step for step, status in move.plan_steps(found["steps"]) if status == "todo"),
                                     None)
                result.moves.append(entry)
                continue
            if found["outcome"] != "moved" or not found["keep_until"]:
                continue
            due = datetime.datetime.fromisoformat(found["keep_until"]) <= at
            entry["removal_due"] = due
            result.moves.append(entry)
            view = result.views.get(found["source"])
            if due and view is not None and not view.error:
                before = {"server": found["source"], "moved_to": found["target"], "kept_until": found["keep_until"],
                          "present": found["domain"] in view.instances}
                result.changes.append(Change("moved", DELETE, (found["domain"], found["source"]), before, None))

    def _plan_sites(self, result: FleetPlan) -> None:
        fleet = self.fleet
        desired = site.desired_names(fleet)
        touched = None if self.only is None else {site.site_name(fleet, domain) for domain in self.only}
        for name, view in sorted(result.views.items()):
            if view.error:
                continue
            server = fleet.servers[name]
            for site_name in sorted(desired.get(name, ())):
                if touched is not None and site_name not in touched:
                    continue
                text = site.render(fleet, server, site_name)
                found = view.sites.get(site_name)
                after = {"digest": site.digest(text)[:16]}
                if found is None:
                    result.changes.append(Change("site", CREATE, (name, site_name), None, after))
                elif found.fleet != fleet.name:
                    result.conflicts.append({"kind": "site", "name": site_name, "server": name,
                                             "why": f"the site is another's ({found.fleet or 'hand-made'})"})
                elif found.digest != site.digest(text) or not found.enabled:
                    result.changes.append(Change("site", UPDATE, (name, site_name),
                                                 {"digest": found.digest[:16], "enabled": found.enabled}, after))
            for site_name, found in sorted(view.sites.items()):
                if found.fleet == fleet.name:
                    result.owned_sites += 1
                    if site_name not in desired.get(name, ()) and (touched is None or site_name in touched):
                        result.changes.append(Change("site", DELETE, (name, site_name),
                                                     {"digest": found.digest[:16]}, None))

    def _plan_certificates(self, result: FleetPlan) -> None:
        from cozyops.tls import deploy

        manager = self._certs()
        names = None
        if self.only is not None:
            names = [domain for domain in self.only if any(i.domain == domain for i in self.fleet.instances)]
            if not names:
                return
        result.certs = manager.plan(names)
        coming = set()
        for spec, renewal in result.certs.todo:
            coming.add(spec.name)
            result.changes.append(Change("certificate", UPDATE if renewal else CREATE, (spec.name,), None,
                                         {"domains": list(spec.domains)}))
        records = manager.store.records()
        for spec in manager.specs(names):
            for server in deploy.servers_of(self.fleet, spec):
                view = result.views.get(server)
                if view is None or view.error:
                    continue
                found = view.sites.get(spec.name)
                served = found.cert_digest if found else ""
                if spec.name in coming:
                    want = "to be issued"
                elif spec.name in records:
                    want = site.digest(manager.store.fullchain(spec.name).read_bytes())
                else:
                    continue
                if served != want:
                    result.changes.append(Change("certificate", UPDATE if served else CREATE,
                                                 (spec.name, server), {"deployed": served[:16] or None},
                                                 {"deployed": want[:16]}))

    # -- apply ---------------------------------------------------------------------------------

    def approve(self, plan: FleetPlan, checksum: str | None, force: bool) -> None:
        if checksum is not None and checksum.strip().lower() != plan.checksum:
            raise CozyopsError(f"plan for fleet {plan.fleet}", f"its checksum is now {plan.checksum}, not "
                               f"{checksum.strip()}", "the fleet or its servers changed since the review: "
                               "run `cozyops plan` again")
        verdict = plan.unsafe(self.safety)
        if verdict and not force:
            raise UnsafePlanError(f"plan for fleet {plan.fleet}", verdict,
                                  "review it with `cozyops plan`; --force applies it; thresholds: "
                                  "cozy_dns.unsafe_changes, cozy_dns.unsafe_percent")

    def apply(self, plan: FleetPlan, progress: Progress = _quiet, parallel: int = PER_SERVER,
              wait_dns: bool = True) -> ApplyReport:
        report = ApplyReport(plan)
        self._apply_servers(plan, report, progress)
        onboarding = self._apply_instances(plan, report, progress, parallel)
        report.onboarding = onboarding
        self._apply_moved(plan, report)
        if plan.dns is not None and plan.dns.changes:
            self._apply_dns(plan, report, wait_dns)
        self._apply_sites(plan, report, progress)
        if plan.certs is not None:
            self._apply_certificates(plan, report, progress)
        return report

    def _apply_servers(self, plan: FleetPlan, report: ApplyReport, progress: Progress) -> None:
        names = sorted(c.key[0] for c in plan.of("server"))
        if not names:
            return
        from cozyops.servers import provision

        progress("servers", 0, len(names))
        try:
            run = provision.provision(self.fleet, names)
        except CozyopsError as error:
            for name in names:
                report.fail("server", name, str(error))
            return
        with state.Owned(self.fleet.state_dir) as owned:
            for name in names:
                summary = run.hosts.get(name)
                if summary is None or summary.failed or summary.unreachable:
                    why = "; ".join(f"{f.task}: {f.message}" for f in (summary.failures if summary else []))
                    report.fail("server", name, why or "no result")
                else:
                    owned.set_server_digest(name, plan.digests[name])
                    report.done.append(("server", name))
        progress("servers", len(names), len(names))

    def _apply_instances(self, plan: FleetPlan, report: ApplyReport, progress: Progress,
                         parallel: int) -> dict[str, str]:
        fleet = self.fleet
        wanted = {instance.domain: instance for instance in fleet.instances}
        work: dict[str, list[Change]] = {}
        with state.Owned(fleet.state_dir) as owned:
            records = owned.all("instance")
        for change in plan.of("instance"):
            domain = change.key[0]
            server = wanted[domain].server if domain in wanted else records[domain]["server"]
            if ("server", server) in report.failed_keys:
                report.fail("instance", domain, f"not done: server {server} failed")
                continue
            work.setdefault(server, []).append(change)
        total = sum(len(v) for v in work.values())
        done_count = [0]
        onboarding: dict[str, str] = {}

        def one(stack: StackClients, owned: state.Owned, change: Change) -> None:
            domain = change.key[0]
            try:
                if change.action == CREATE:
                    instance = wanted[domain]
                    created = lifecycle.create(stack, instance)
                    owned.put("instance", domain, instance.server, "created", _applied(instance))
                    if created.onboarding_link:
                        onboarding[domain] = created.onboarding_link
                elif change.action == UPDATE:
                    instance = wanted[domain]
                    lifecycle.modify(stack, domain, dict(change.after))
                    record = owned.get("instance", domain) or {"settings": {}, "origin": "created"}
                    owned.put("instance", domain, instance.server, record["origin"],
                              {**record["settings"], **_applied(instance)})
                else:
                    lifecycle.destroy(stack, domain)
                    owned.drop("instance", domain)
                report.done.append(("instance", domain))
            except CozyopsError as error:
                report.fail("instance", domain, str(error))
            done_count[0] += 1
            progress("instances", done_count[0], total)

        def server_work(name: str) -> None:
            try:
                with connect(fleet, fleet.servers[name]) as stack, state.Owned(fleet.state_dir) as owned:
                    stack.admin  # noqa: B018 - the passphrase and the forward, once, before the threads
                    with ThreadPoolExecutor(max_workers=parallel) as pool:
                        list(pool.map(lambda change: one(stack, owned, change), work[name]))
            except CozyopsError as error:
                for change in work[name]:
                    if ("instance", change.key[0]) not in report.failed_keys:
                        report.fail("instance", change.key[0], str(error))

        if work:
            progress("instances", 0, total)
            with ThreadPoolExecutor(max_workers=len(work)) as pool:
                list(pool.map(server_work, sorted(work)))
        # Records of owned instances that are gone from their server and from the fleet.
        with state.Owned(fleet.state_dir) as owned:
            for domain, record in owned.all("instance").items():
                view = plan.views.get(record["server"])
                if domain not in wanted and view is not None and not view.error and domain not in view.instances:
                    owned.drop("instance", domain)
        return onboarding

    def _apply_moved(self, plan: FleetPlan, report: ApplyReport) -> None:
        """Moved sources whose keep days are over: destroyed (still blocked MOVED), journal closed."""
        from cozyops.instances import move

        for change in plan.of("moved"):
            domain, source = change.key
            if ("server", source) in report.failed_keys:
                report.fail("moved", domain, f"not done: server {source} failed")
                continue
            try:
                move.remove_moved_source(self.fleet, {"domain": domain, "source": source})
                report.done.append(("moved", f"{domain} on {source}"))
            except CozyopsError as error:
                report.fail("moved", domain, str(error))

    def _apply_dns(self, plan: FleetPlan, report: ApplyReport, wait: bool) -> None:
        manager = self._dns()
        try:
            outcome = manager.apply_and_wait(plan.dns, wait=wait)
        except CozyopsError as error:
            report.fail("dns", plan.dns.zone, str(error))
            return
        for batch in outcome.result.failed:
            report.fail("dns", f"{len(batch.changes)} record(s)", batch.error or "refused")
        if outcome.waited and not outcome.propagated:
            report.warnings.append("DNS: not every authoritative server serves the new records yet")
        report.done.append(("dns", f"{outcome.result.applied} change(s)"))

    def _apply_sites(self, plan: FleetPlan, report: ApplyReport, progress: Progress) -> None:
        fleet = self.fleet
        by_server: dict[str, list[Change]] = {}
        for change in plan.of("site"):
            by_server.setdefault(change.key[0], []).append(change)
        if not by_server:
            return
        failed_instances = {key for kind, key in report.failed_keys if kind == "instance"}
        deploy_dir = fleet.acme.deploy_dir if fleet.acme else "/etc/ssl/cozyops"
        reload = fleet.acme.nginx_reload if fleet.acme else "service nginx reload"

        def server_sites(name: str) -> None:
            server = fleet.servers[name]
            write, remove = {}, []
            for change in by_server[name]:
                site_name = change.key[1]
                covered = [i.domain for i in fleet.instances if i.server == name
                           and site.site_name(fleet, i.domain) == site_name]
                if change.action != DELETE and covered and all(d in failed_instances for d in covered):
                    report.fail("site", f"{site_name} on {name}", "not done: its instance failed")
                    continue
                if change.action == DELETE:
                    remove.append(site_name)
                else:
                    write[site_name] = site.render(fleet, server, site_name)
            try:
                with connect(fleet, server) as stack:
                    site.apply(stack.transport, write, remove, deploy_dir, reload)
                for site_name in [*write, *remove]:
                    report.done.append(("site", f"{site_name} on {name}"))
            except CozyopsError as error:
                for site_name in [*write, *remove]:
                    report.fail("site", f"{site_name} on {name}", str(error))

        with ThreadPoolExecutor(max_workers=len(by_server)) as pool:
            list(pool.map(server_sites, sorted(by_server)))

    def _apply_certificates(self, plan: FleetPlan, report: ApplyReport, progress: Progress) -> None:
        from cozyops.tls import deploy

        manager = self._certs()
        todo = plan.certs.todo
        if todo:
            run = manager.execute(todo, progress)
            for name, why in run.failed.items():
                report.fail("certificate", name, why)
            for name in run.issued:
                report.done.append(("certificate", f"{name} issued"))
            report.warnings += run.cleanup_problems
        wanted: dict[str, set[str]] = {}
        for change in plan.of("certificate"):
            if len(change.key) == 2:
                wanted.setdefault(change.key[0], set()).add(change.key[1])
        if not wanted:
            return
        specs = [spec for spec in manager.specs() if spec.name in wanted]
        servers = sorted(set().union(*wanted.values()) - {key for kind, key in report.failed_keys if kind == "server"})
        result = deploy.deploy_fleet(self.fleet, manager.store, specs, servers)
        for server, outcome in result.deployed:
            report.done.append(("certificate", f"{outcome.name} on {server}"))
        for what, why in result.failed.items():
            report.fail("certificate", what, why)


@dataclass
class ApplyReport:
    plan: FleetPlan
    done: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # kind, what, why
    warnings: list[str] = field(default_factory=list)
    onboarding: dict[str, str] = field(default_factory=dict, repr=False)  # secrets: shown once, never logged

    @property
    def failed_keys(self) -> set[tuple[str, str]]:
        return {(kind, what) for kind, what, _ in self.failed}

    def fail(self, kind: str, what: str, why: str) -> None:
        self.failed.append((kind, what, why))

    def to_json(self) -> dict:
        return {"checksum": self.plan.checksum, "done": [{"kind": k, "what": w} for k, w in self.done],
                "failed": [{"kind": k, "what": w, "why": y} for k, w, y in self.failed], "warnings": self.warnings}


def _wanted(instance: Instance) -> dict:
    return {"server": instance.server, "apps": list(instance.apps), **instance.settings()}


def _applied(instance: Instance) -> dict:
    """What cozy-stack does not show back, as applied (compared by the next plans)."""
    return {name: value for name, value in instance.settings().items() if name in lifecycle.SETTINGS_ONLY}
