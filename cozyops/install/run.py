"""The steps of `cozyops install`, each journaled (``state.Steps("install", DOMAIN)``).

    fleet        the fleet directory's edits (settings, the server, the first instance)
    provision    the server (playbooks/site.yml through cozyops.servers.provision)
    dns          the fleet's records written (rfc2136), or printed and waited for (manual)
    certificate  the instance's wildcard certificate (cozyops.tls: DNS-01)
    deploy       onto the server's nginx (cozyops.tls.deploy), served and checked
    instance     created on the server's cozy-stack (admin API), once
    renewal      the daily `cert renew --deploy` (a timer, a cron entry, or the line to schedule)
    check        https://drive.<instance>/ answers through nginx with the issued certificate

A step's work is idempotent and its end is committed in the fleet's state, so a run killed
anywhere continues after the last step done, redoing at most the one it was in. A second run of a
finished install goes through the steps again (each finds nothing to do: "unchanged"), except
provisioning, which `cozyops server provision` runs again when wanted. The onboarding link
(registerToken) is read from cozy-stack at the end of each run that has one to show; it is
returned to the caller to print, never journaled nor logged.
"""

from __future__ import annotations

import base64
import datetime
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cozyops import state
from cozyops.errors import CozyopsError
from cozyops.install import fleetdir, renewal
from cozyops.install.settings import Edits, app_host
from cozyops.model import Fleet

STEPS = ("fleet", "provision", "dns", "certificate", "deploy", "instance", "renewal", "check")
KILL_ENV = "COZYOPS_KILL_AT"  # tests: "install:STEP" kills the run once STEP's work is done, before its journal
CHECK_APP = "drive"
CHECK_SECONDS = 30.0
MANUAL_POLL = 3.0


@dataclass
class Event:
    """What the caller hears: a step starting or ending, a line of detail, records to create,
    propagation progress, or a provisioning task."""

    kind: str  # step | detail | records | waiting | task
    step: str
    status: str = ""  # for kind step: start | done | unchanged | skipped
    detail: str = ""
    data: object = None


Report = Callable[[Event], None]


def _quiet(event: Event) -> None:
    pass


@dataclass
class Settings:
    """How the install runs, beside the fleet's edits."""

    schedule_renewal: bool = False  # --host: also put the renewal line in the user's crontab
    dns_wait: float = 3600.0  # --dns manual: how long to wait for the records
    executable: str | None = None  # the Python running cozyops in the renewal command (default: this one)


@dataclass
class Result:
    domain: str
    server: str
    root: Path
    steps: list[tuple[str, str, str]] = field(default_factory=list)  # (step, status, detail)
    resumed: bool = False
    onboarding_link: str | None = field(default=None, repr=False)  # a secret: printed once, never logged
    onboarded: bool = False
    renewal: renewal.Renewal | None = None
    https: dict = field(default_factory=dict)

    @property
    def changed(self) -> list[str]:
        return [step for step, status, _ in self.steps if status == "done"]

    @property
    def nothing_to_do(self) -> bool:
        return not self.changed

    def to_json(self) -> dict:
        return {"domain": self.domain, "server": self.server, "fleet": str(self.root), "resumed": self.resumed,
                "nothing_to_do": self.nothing_to_do,
                "steps": [{"step": s, "status": st, "detail": d} for s, st, d in self.steps],
                "onboarding_link": self.onboarding_link, "onboarded": self.onboarded,
                "renewal": self.renewal.to_json() if self.renewal else None, "https": self.https}


def _kill_point(step: str) -> None:
    if os.environ.get(KILL_ENV) == f"install:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def register_token_hex(attributes: dict) -> str | None:
    """cozy-stack's register_token (base64 in the admin API's JSON) as the hex of `?registerToken=`."""
    token = attributes.get("register_token")
    if not token:
        return None
    try:
        return base64.b64decode(token).hex()
    except ValueError:
        return None


def https_get(address: str, server_name: str, port: int = 443, timeout: float = 10.0) -> dict:
    """GET / of ``server_name`` at ``address`` over TLS (SNI): status, Server header, the served
    certificate (DER). The certificate is compared by the caller; the CA chain is not checked here."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((address, port), timeout=timeout) as raw, \
            context.wrap_socket(raw, server_hostname=server_name) as tls:
        der = tls.getpeercert(binary_form=True)
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {server_name}\r\nUser-Agent: cozyops-install\r\n"
                    "Connection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = tls.recv(4096)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    try:
        status = int(head[0].split()[1])
    except (IndexError, ValueError):
        raise CozyopsError(f"https://{server_name}/ at {address}", f"no HTTP answer ({head[0][:60]!r})") from None
    headers = {}
    for line in head[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    return {"status": status, "server": headers.get("server", ""), "location": headers.get("location", ""),
            "der": der}


class Installer:
    """One install of ``edits`` into the fleet at ``root``. ``load`` reads the fleet (the caller's
    ``inventory.load``: the install never reads fleet files itself)."""

    def __init__(self, root: Path, edits: Edits, load: Callable[[], Fleet], settings: Settings | None = None,
                 report: Report = _quiet) -> None:
        self.root, self.edits, self.load = root, edits, load
        self.settings = settings or Settings()
        self.report = report
        self.fleet: Fleet | None = None
        self.result = Result(edits.instance_domain, edits.server, root)

    # -- the run ----------------------------------------------------------------------------------

    def params(self) -> dict:
        """What identifies the install (stable across a kill: not what is left to edit)."""
        return {"domain": self.edits.instance_domain, "server": self.edits.server, "zone": self.edits.zone,
                "subdomains": self.edits.subdomains, "local": self.edits.local,
                "schedule_renewal": self.settings.schedule_renewal}

    def run(self) -> Result:
        work = {
            "fleet": self._fleet, "provision": self._provision, "dns": self._dns,
            "certificate": self._certificate, "deploy": self._deploy, "instance": self._create_instance,
            "renewal": self._renewal, "check": self._check,
        }
        self.root.mkdir(parents=True, exist_ok=True)
        with state.Steps(self.root / ".cozyops", "install", self.edits.instance_domain) as steps:
            finished_before = steps.status() == "finished"
            provisioned_at = self._provisioned_at(steps) if finished_before else None
            first = steps.start(self.params())
            if not steps.new:
                self.result.resumed = True
                if first != self.params():
                    raise CozyopsError(
                        f"install of {self.edits.instance_domain}",
                        f"an unfinished run had other settings ({_differences(first, self.params())})",
                        "run it again as it was started, or remove the instance from instances.yml first")
            for step in STEPS:
                if steps.done(step):
                    self._said(step, "skipped", f"done by the run killed earlier ({_at(steps, step)})")
                    if step == "renewal":
                        self.result.renewal = _renewal_from(steps.result(step))
                    continue
                if step == "provision" and provisioned_at:
                    self._fleet_loaded()
                    self._said(step, "unchanged", f"provisioned by the install of {provisioned_at} "
                               "(`cozyops server provision` runs it again)")
                    steps.record(step, {"changed": False, "earlier": provisioned_at})
                    continue
                self.report(Event("step", step, "start"))
                changed, detail, produced = work[step]()
                _kill_point(step)
                steps.record(step, {"changed": changed, **(produced or {})})
                self._said(step, "done" if changed else "unchanged", detail)
            steps.finish("done")
        self._onboarding()
        return self.result

    def _provisioned_at(self, steps: state.Steps) -> str | None:
        rows = dict(steps.steps())
        return rows.get("provision")

    def _said(self, step: str, status: str, detail: str) -> None:
        self.result.steps.append((step, status, detail))
        self.report(Event("step", step, status, detail))

    def _fleet_loaded(self) -> Fleet:
        if self.fleet is None:
            self.fleet = self.load()
        return self.fleet

    # -- the steps: each returns (changed, detail, what to journal) ---------------------------------

    def _fleet(self) -> tuple[bool, str, dict]:
        changed = fleetdir.write(self.root, self.edits)
        self.fleet = self.load()  # checks the edited fleet as every command will read it
        if self.edits.instance_domain not in {instance.domain for instance in self.fleet.instances}:
            raise CozyopsError(f"fleet {self.root}", f"has no instance {self.edits.instance_domain} after the edit")
        detail = f"{self.root}: " + (", ".join(changed) + " written" if changed else "already has everything")
        return bool(changed), detail, {"files": changed}

    def _provision(self) -> tuple[bool, str, dict]:
        from cozyops.servers.provision import provision

        fleet = self._fleet_loaded()
        server = self.edits.server

        def task(result) -> None:
            self.report(Event("task", "provision", result.status, f"{result.task}", result))

        outcome = provision(fleet, [server], progress=task)
        summary = outcome.hosts.get(server)
        if outcome.failed or summary is None:
            failures = summary.failures if summary else []
            why = "; ".join(f"{failure.task}: {failure.message}" for failure in failures[:3]) or outcome.status
            raise CozyopsError(f"server {server}", f"provisioning failed: {why}",
                               f"Ansible's output: {outcome.artifacts}")
        return summary.changed > 0, (f"{server}: {summary.ok} ok, {summary.changed} changed in "
                                     f"{outcome.seconds:.0f} s (run {outcome.run})"), {"run": outcome.run}

    def _instance_records(self, manager) -> list:
        """The fleet's records for this instance: at its name and below (nested), or its app names
        and its parent's wildcard (flat), CAA and challenge CNAMEs included."""
        from cozyops.dns.records import fqdn

        domain = self.edits.instance_domain
        parent = domain.split(".", 1)[1] if "." in domain else domain
        wanted = []
        for rrset in manager.desired():
            name = fqdn(rrset.name, self.edits.zone).rstrip(".")
            if name == domain or name.endswith("." + domain):
                wanted.append(rrset)
            elif self.edits.subdomains == "flat" and (
                    name in (parent, f"*.{parent}", f"_acme-challenge.{parent}")
                    or (name.startswith(domain.split(".")[0] + "-") and name.endswith("." + parent))):
                wanted.append(rrset)
        return wanted

    def _the_instance(self):
        fleet = self._fleet_loaded()
        return next(instance for instance in fleet.instances if instance.domain == self.edits.instance_domain)

    def _dns(self) -> tuple[bool, str, dict]:
        from cozyops.dns.manager import DnsManager

        manager = DnsManager(self._fleet_loaded())
        if manager.manual:
            return self._dns_manual(manager)
        with manager.locked("cozyops install"):
            plan = manager.plan()
            manager.approve(plan, None, force=False)
            if not plan.changes:
                return False, f"zone {plan.zone}: every record is there", {}
            report = manager.apply_and_wait(
                plan, on_wait=lambda reports: self.report(Event("waiting", "dns", data=reports)))
        if not report.propagated:
            late = "; ".join(f"{r.name}: {r.reason or ', '.join(r.problems[:2])}" for r in report.propagation
                             if not r.ok)
            raise CozyopsError(f"zone {plan.zone}", f"records written but not served everywhere: {late}",
                               "run `cozyops install` again to wait more")
        return True, (f"zone {plan.zone}: {len(plan.changes)} change(s) written, served by "
                      f"{len(report.propagation)} authoritative server(s)"), {"changes": len(plan.changes)}

    def _dns_manual(self, manager) -> tuple[bool, str, dict]:
        from cozyops.dns import propagation, records

        fleet = self._fleet_loaded()
        wanted = self._instance_records(manager)
        expected = propagation.expectations(fleet.zone, wanted)
        servers = manager.servers()
        reports = propagation.check(servers, fleet.zone, expected)
        if all(report.ok for report in reports):
            return False, f"zone {fleet.zone}: the {len(wanted)} record(s) are served by every authoritative server", {}
        header = (f"Create these records in the zone {fleet.zone} at your DNS host (registrar); cozyops waits until "
                  f"every authoritative server ({', '.join(name for name, _ in servers)}) serves them.")
        self.report(Event("records", "dns", detail=records.zone_snippet(fleet.zone, wanted, header), data=wanted))
        deadline = time.monotonic() + self.settings.dns_wait
        while True:
            self.report(Event("waiting", "dns", data=reports))
            if all(report.ok for report in reports):
                break
            if time.monotonic() >= deadline:
                late = "; ".join(f"{r.name}: {r.reason or ', '.join(r.problems[:2])}" for r in reports if not r.ok)
                raise CozyopsError(f"zone {fleet.zone}", f"the records are not served after "
                                   f"{self.settings.dns_wait:g} s: {late}",
                                   "create them, then run `cozyops install` again: it goes on from here")
            time.sleep(MANUAL_POLL)
            servers = manager.servers()
            reports = propagation.check(servers, fleet.zone, expected)
        return True, f"zone {fleet.zone}: the {len(wanted)} record(s) are served by {len(reports)} server(s)", {}

    def _cert_manager(self):
        from cozyops.tls.manager import CertManager

        return CertManager(self._fleet_loaded())

    def _certificate(self) -> tuple[bool, str, dict]:
        manager = self._cert_manager()
        domain = self.edits.instance_domain
        try:
            with manager.locked("cozyops install"):
                manager.recover()
                manager.resume_orders()
                plan = manager.plan([domain])
                result = manager.execute(plan.todo)
            if result.failed or plan.refused:
                problems = [f"{name}: {why}" for name, why in sorted(result.failed.items())]
                problems += [f"{spec.name}: over the weekly budget" for spec in plan.refused]
                raise CozyopsError(f"certificate of {domain}", "; ".join(problems))
            spec = manager.specs([domain])[0]
            record = manager.store.records()[spec.name]
        finally:
            manager.close()
        names = " + ".join(spec.domains)
        if result.issued:
            return True, f"{spec.name} ({names}): serial {record.serial}, until {record.not_after:%Y-%m-%d}", \
                {"name": spec.name, "serial": record.serial}
        return False, f"{spec.name} ({names}): valid until {record.not_after:%Y-%m-%d}", {"name": spec.name}

    def _deploy(self) -> tuple[bool, str, dict]:
        from cozyops.tls.deploy import deploy_fleet

        manager = self._cert_manager()
        try:
            with manager.locked("cozyops install"):
                outcome = deploy_fleet(manager.fleet, manager.store, manager.specs([self.edits.instance_domain]),
                                       [self.edits.server])
        finally:
            manager.close()
        if outcome.failed:
            raise CozyopsError(f"deploy of {self.edits.instance_domain}'s certificate",
                               "; ".join(f"{what}: {why}" for what, why in sorted(outcome.failed.items())))
        changed = any(deployed.changed for _, deployed in outcome.deployed)
        where = ", ".join(f"{deployed.name} on {server} ({deployed.fullchain})"
                          for server, deployed in outcome.deployed)
        return changed, (where + (": nginx reloaded, served" if changed else ": already served")), {}

    def _create_instance(self) -> tuple[bool, str, dict]:
        """The instance on its server's cozy-stack, created when missing (``cozyops.instances.lifecycle``,
        as `cozyops apply` does) and recorded as the fleet's (``state.Owned``): `cozyops plan` then has
        nothing to do for it. A run killed between the two finds it there and records it."""
        from cozyops.instances import lifecycle
        from cozyops.stack.connect import connect

        fleet = self._fleet_loaded()
        instance = self._the_instance()
        applied = {name: value for name, value in instance.settings().items() if name in lifecycle.SETTINGS_ONLY}
        with connect(fleet, fleet.servers[instance.server]) as stack:
            found = lifecycle.show(stack, instance.domain)
            if found is None:
                lifecycle.create(stack, instance)
        with state.Owned(fleet.state_dir) as owned:
            record = owned.get("instance", instance.domain)
            if record is None or record["server"] != instance.server:
                owned.put("instance", instance.domain, instance.server, "created", applied)
        if found is not None:
            return False, f"{instance.domain} exists on {instance.server}" + (
                "" if record else " (now recorded as the fleet's)"), {}
        return True, f"{instance.domain} created on {instance.server} (apps {', '.join(instance.apps)})", {}

    def _renewal(self) -> tuple[bool, str, dict]:
        executable = self.settings.executable
        if self.edits.local:
            done = renewal.schedule_local(self.root, self._fleet_loaded().name, executable)
        elif self.settings.schedule_renewal:
            done = renewal.schedule_crontab(self.root, executable)
        else:
            done = renewal.printed(self.root, executable)
        self.result.renewal = done
        detail = {"systemd": f"systemd timer {done.where}", "cron.d": f"cron entry {done.where}",
                  "crontab": f"in {done.where}", "printed": "to schedule on this machine (see below)"}[done.how]
        return done.changed, detail, {"renewal": done.to_json()}

    def _check(self) -> tuple[bool, str, dict]:
        from cryptography import x509

        fleet = self._fleet_loaded()
        server = fleet.servers[self.edits.server]
        address = server.ipv4 or server.ipv6 or server.address
        name = app_host(self.edits.instance_domain, CHECK_APP, self.edits.subdomains)
        manager = self._cert_manager()
        try:
            spec = manager.specs([self.edits.instance_domain])[0]
            issued = x509.load_pem_x509_certificate(manager.store.fullchain(spec.name).read_bytes())
        finally:
            manager.close()
        deadline = time.monotonic() + CHECK_SECONDS
        while True:
            try:
                answer = https_get(address, name)
                served = x509.load_der_x509_certificate(answer["der"])
                problem = None
                if served.fingerprint(served.signature_hash_algorithm or _sha256()) != \
                        issued.fingerprint(issued.signature_hash_algorithm or _sha256()):
                    problem = f"serves serial {served.serial_number:x}, not the issued {issued.serial_number:x}"
                elif answer["status"] >= 500:
                    problem = f"answers HTTP {answer['status']}"
                elif "nginx" not in answer["server"].lower():
                    problem = f"answers through {answer['server'] or 'an unnamed server'}, not nginx"
            except (OSError, ssl.SSLError, CozyopsError) as error:
                problem = str(error) or type(error).__name__
            if problem is None:
                break
            if time.monotonic() >= deadline:
                raise CozyopsError(f"https://{name}/ at {address}", problem)
            time.sleep(1.0)
        self.result.https = {"url": f"https://{name}/", "address": address, "status": answer["status"],
                             "server": answer["server"], "serial": f"{served.serial_number:x}",
                             "not_after": served.not_valid_after_utc.isoformat(timespec="seconds")}
        return False, (f"https://{name}/ answers HTTP {answer['status']} through {answer['server']} with the issued "
                       f"certificate (until {served.not_valid_after_utc:%Y-%m-%d})"), {"https": self.result.https}

    def _onboarding(self) -> None:
        """The onboarding link, when the instance has not been onboarded yet (read, never kept)."""
        from cozyops.stack.connect import connect

        fleet = self._fleet_loaded()
        with connect(fleet, fleet.servers[self.edits.server]) as stack:
            found = stack.admin.instance(self.edits.instance_domain)
        self.result.onboarded = found.onboarded
        token = register_token_hex(found.attributes)
        if token and not found.onboarded:
            self.result.onboarding_link = f"https://{self.edits.instance_domain}/?registerToken={token}"


def _sha256():
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()




def _differences(first: dict, now: dict) -> str:
    return ", ".join(f"{key} {first.get(key)!r}, now {now.get(key)!r}" for key in sorted(set(first) | set(now))
                     if first.get(key) != now.get(key))


def _at(steps: state.Steps, step: str) -> str:
    return dict(steps.steps()).get(step, "?")


def _renewal_from(produced: object) -> renewal.Renewal | None:
    if isinstance(produced, dict) and isinstance(produced.get("renewal"), dict):
        data = produced["renewal"]
        return renewal.Renewal(data["how"], data["where"], data["command"], False)
    return None


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
