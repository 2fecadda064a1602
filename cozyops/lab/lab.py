"""Bring a lab up, report on it, take it down.

The lab's directory holds everything: ``lab.json`` (what runs: namespaces and processes by PID and
start time), the services' configurations and zones, their logs, and the lab's fleet directory.
A lab is *up* while its namespace exists. ``up`` on a lab that is up starts only what is missing
(it never restarts a running service nor resets a zone); ``down`` stops every recorded process
and removes the namespaces, and is harmless when repeated.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cozyops import files, paths
from cozyops.dns import tsig
from cozyops.errors import ConfigError, CozyopsError, LabError
from cozyops.lab import aptrepo, aptsources, fleet, hosts, netns, probe, procs, rootfs, setup, sshkeys
from cozyops.lab.services import Bind, Knot, Pebble, PowerDns, Service
from cozyops.lab.spec import (
    APT_PROXY_PORT,
    DEFAULT_ZONE3,
    DNS_PORT,
    SSH_PORT,
    HostSpec,
    LabSpec,
    check_id,
    check_zone,
)
from cozyops.transport.ssh import SshTarget, SshTransport

STATE_FILE = "lab.json"
READY_TIMEOUT = 15.0
DEFAULT_HOSTS = 2
UNIX_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1
APT_PROXY = "apt-proxy"

Report = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def default_dir(lab_id: str) -> Path:
    return paths.labs_dir() / lab_id


@dataclass
class LabState:
    """What ``lab.json`` records."""

    id: str
    zone: str
    zone2: str
    created: str = ""
    namespaces: list[str] = field(default_factory=list)
    processes: list[procs.Proc] = field(default_factory=list)
    hosts: int = 0  # h1..hN: kept from one `up` to the next (their disks stay until --purge)
    rootfs: str = ""  # the root filesystem the hosts' overlays were made on
    stack: bool = False  # the cozy-stack double is installed on the hosts (`up --with-stack`)
    zone3: str = DEFAULT_ZONE3  # PowerDNS's
    stacked: list[str] = field(default_factory=list)  # the hosts `server provision` has run on

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "zone": self.zone,
            "zone2": self.zone2,
            "zone3": self.zone3,
            "created": self.created,
            "namespaces": self.namespaces,
            "processes": [proc.to_json() for proc in self.processes],
            "hosts": self.hosts,
            "rootfs": self.rootfs,
            "stack": self.stack,
            "stacked": self.stacked,
        }

    @classmethod
    def from_json(cls, data: dict) -> LabState:
        return cls(
            data["id"],
            data["zone"],
            data["zone2"],
            data.get("created", ""),
            list(data.get("namespaces", [])),
            [procs.Proc.from_json(item) for item in data.get("processes", [])],
            int(data.get("hosts", 0)),
            data.get("rootfs", ""),
            bool(data.get("stack", False)),
            data.get("zone3", DEFAULT_ZONE3),
            list(data.get("stacked", [])),
        )

    def process(self, name: str) -> procs.Proc | None:
        return next((proc for proc in self.processes if proc.name == name), None)


class Lab:
    def __init__(self, spec: LabSpec, directory: Path) -> None:
        self.spec = spec
        self.dir = directory.resolve()

    # -- locating -----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        lab_id: str | None = None,
        directory: Path | None = None,
        zone: str | None = None,
        zone2: str | None = None,
        zone3: str | None = None,
    ) -> Lab:
        """The lab with this id and/or directory.

        Its recorded zones stay unless asked otherwise, which only a lab that is down allows.
        """
        directory = directory or default_dir(check_id(lab_id or "lab"))
        recorded = cls._read_state(directory)
        if recorded:
            if lab_id and lab_id != recorded.id:
                raise ConfigError(str(directory), f"holds lab {recorded.id!r}, not {lab_id!r}")
            lab_id = recorded.id
            if netns.exists(LabSpec(lab_id).netns):
                for asked, running in ((zone, recorded.zone), (zone2, recorded.zone2), (zone3, recorded.zone3)):
                    if asked and check_zone(asked) != running:
                        raise ConfigError(
                            f"lab {lab_id}",
                            f"is up with zone {running}, not {asked}",
                            "`cozyops lab down` first to change its zones",
                        )
            zone, zone2, zone3 = zone or recorded.zone, zone2 or recorded.zone2, zone3 or recorded.zone3
        lab_id = check_id(lab_id or "lab")
        defaults = LabSpec()
        return cls(LabSpec(lab_id, zone or defaults.zone, zone2 or defaults.zone2, zone3 or defaults.zone3), directory)

    @staticmethod
    def _read_state(directory: Path) -> LabState | None:
        path = directory / STATE_FILE
        try:
            return LabState.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(str(path), f"unreadable lab state ({error})") from None

    # -- files ---------------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.dir / STATE_FILE

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def fleet_dir(self) -> Path:
        return self.dir / "fleet"

    @property
    def key_file(self) -> Path:
        return self.fleet_dir / "secrets" / "tsig.key"

    @property
    def powerdns_key_file(self) -> Path:
        """PowerDNS's API key (the lab's fleets read it; the lexicon fleet from its own file)."""
        return self.fleet_dir / "secrets" / "powerdns-api.key"

    def provider_fleet_dir(self, provider: str) -> Path:
        """The ready fleet of the third zone written through ``provider`` (powerdns, lexicon)."""
        return self.dir / f"fleet-{provider}"

    def powerdns_api_key(self) -> str:
        if not self.powerdns_key_file.exists():
            files.private_dir(self.powerdns_key_file.parent)
            files.write_private(self.powerdns_key_file, secrets.token_urlsafe(32) + "\n")
        return self.powerdns_key_file.read_text().strip()

    @property
    def host_files(self) -> hosts.HostFiles:
        return hosts.HostFiles(self.dir)

    def state(self) -> LabState:
        return self._read_state(self.dir) or LabState(self.spec.id, self.spec.zone, self.spec.zone2,
                                                      zone3=self.spec.zone3)

    def _save(self, state: LabState) -> None:
        files.write_atomic(self.state_path, json.dumps(state.to_json(), indent=2) + "\n")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One lab operation at a time (a second `up` waits for the first)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def key(self) -> tsig.TsigKey:
        if not self.key_file.exists():
            files.private_dir(self.key_file.parent)
            tsig.write(self.key_file, tsig.generate(self.spec.key_name))
        return tsig.load(self.key_file)

    def services(self) -> list[Service]:
        """In starting order: PowerDNS first, so that its secondaries find its zone at once."""
        key = self.key()
        powerdns = PowerDns(self.spec, self.dir / "powerdns", key, self.key_file)
        powerdns.api_key = self.powerdns_api_key()
        return [
            powerdns,
            Bind(self.spec, self.dir / "bind", key, self.key_file),
            Knot(self.spec, self.dir / "knot", key, self.key_file),
            self.pebble(),
        ]

    def _check_socket_paths(self) -> None:
        """Knot's control socket lives in the lab's directory (Knot makes its path absolute); a Unix
        socket's path holds at most 107 bytes: a directory too deep is refused before anything starts."""
        socket = self.dir.resolve() / "knot" / "run" / "knot.sock"
        if len(str(socket).encode()) > UNIX_PATH_MAX:
            raise LabError(f"lab directory {self.dir}", f"is too deep: Knot's control socket there ({socket}) "
                           f"would pass the {UNIX_PATH_MAX} bytes a Unix socket's path may have",
                           "pick a shorter --dir")

    def pebble(self) -> Pebble:
        return Pebble(self.spec, self.dir / "pebble")

    def is_up(self) -> bool:
        """Its namespace exists and this directory's state records it (not another lab's with the same id)."""
        return netns.exists(self.spec.netns) and self.spec.netns in self.state().namespaces

    # -- up ------------------------------------------------------------------------------------

    def up(self, report: Report = _quiet, hosts_wanted: int | None = None, with_stack: bool = False,
           bare: int = 0) -> LabState:
        """Start what is not running. ``hosts_wanted`` (default 2) hosts at least: a lab keeps
        the hosts it has. ``with_stack`` installs the cozy-stack double on every host but the last
        ``bare`` ones, which are left as fresh Debian hosts (for `cozyops install`, `lab demo`)."""
        setup.require_root("cozyops lab up")
        setup.require_packages("cozyops lab up")
        self._check_socket_paths()
        with self._locked():
            state = self.state()
            self._check_namespace_is_ours(state)
            host_count = max(DEFAULT_HOSTS if hosts_wanted is None else hosts_wanted, state.hosts)
            wanted_hosts = self.spec.hosts(host_count)
            lower = self._lower(state) if wanted_hosts else None
            fresh = not self.is_up()
            if fresh:
                for proc in state.processes:  # left from a lab whose namespace went away
                    procs.stop(proc)
                state = LabState(
                    self.spec.id,
                    self.spec.zone,
                    self.spec.zone2,
                    datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                    hosts=state.hosts,
                    rootfs=state.rootfs,
                    stack=state.stack,
                    zone3=self.spec.zone3,
                    stacked=state.stacked,
                )
                report(f"network namespace {self.spec.netns} ({self.spec.subnet})")
                state.namespaces = [self.spec.netns]
                self._save(state)  # recorded before creation: a crash leaves something `down` finds
                netns.create(self.spec.netns)
                netns.add_bridge(
                    self.spec.netns,
                    "br0",
                    [self.spec.gateway, self.spec.bind_address, self.spec.knot_address, self.spec.powerdns_address],
                    self.spec.subnet.prefixlen,
                )
            for service in self.services():
                running = state.process(service.name)
                if running and procs.alive(running):
                    continue
                if isinstance(service, PowerDns) and not fresh and not state.process(service.name):
                    raise LabError(f"lab {self.spec.id}", "was brought up by a cozyops without PowerDNS (its "
                                   "third zone)", "`cozyops lab down`, then `cozyops lab up`")
                report(f"starting {service.name}")
                if fresh or not service.config.exists():
                    service.prepare()
                state.processes = [p for p in state.processes if p.name != service.name]
                proc, popen = procs.spawn(
                    service.name,
                    service.argv(),
                    self.logs / f"{service.name}.log",
                    netns=self.spec.netns,
                    env=service.env(),
                    cwd=service.root,
                )
                state.processes.append(proc)
                self._save(state)
                self._wait_ready(service, popen, proc)
                if isinstance(service, Pebble):
                    netns.inside(self.spec.netns, service.export_roots)
            report("waiting for the DNS servers to serve the zones")
            self._wait_secondaries()
            if wanted_hosts:
                assert lower is not None
                booted = self._hosts_up(state, wanted_hosts, lower, report)
                stacked = wanted_hosts[: len(wanted_hosts) - bare] if bare else wanted_hosts
                # The stack goes on the hosts that never had it (--with-stack); a lab with the
                # stack keeps it on every host, and a host booted again is provisioned again (a
                # check until cozy-stack answers: its init started it). A running host that has
                # it is left alone: `cozyops server provision` is the way to run the roles again.
                todo = [host for host in stacked
                        if host in booted or (with_stack and host.name not in state.stacked)]
                if todo and (with_stack or state.stack):
                    self._stack_up(state, todo, report)
            elif with_stack:
                raise ConfigError("--with-stack", "needs hosts (--hosts 1 or more)")
            where = self.host_files
            fleet_hosts = self.fleet_hosts(state)
            fleet.write(self.fleet_dir, self.spec, self.pebble().ca_bundle, fleet_hosts,
                        where.client_key, where.ssh_config)
            for provider in fleet.PROVIDERS:
                fleet.write(self.provider_fleet_dir(provider), self.spec, self.pebble().ca_bundle, fleet_hosts,
                            where.client_key, where.ssh_config, provider=provider,
                            api_key_file=self.powerdns_key_file)
            return state

    def _lower(self, state: LabState) -> Path:
        """The hosts' root filesystem: the one they were made on, else the one `lab setup` built."""
        if state.rootfs and rootfs.built(Path(state.rootfs)):
            return Path(state.rootfs)
        return rootfs.find()

    def _hosts_up(self, state: LabState, wanted: list[HostSpec], lower: Path, report: Report) -> list[HostSpec]:
        """Boot the hosts that are not running; the ones booted."""
        where = self.host_files
        state.hosts, state.rootfs = len(wanted), str(lower)
        self._save(state)
        targets = aptsources.read_targets()  # the machine's apt sources, read once for this `up`
        self._apt_proxy_up(state, targets, report)
        apt_files = aptsources.files_to_mirror(targets)
        client_public = sshkeys.ensure_key(where.client_key, f"cozyops-lab-{self.spec.id}")
        inits = {}
        booted = []
        for host in wanted:
            running = state.process(hosts.process_name(host))
            if running and procs.alive(running):
                inits[host.name] = running
                continue
            report(f"booting {host.name} ({host.address})")
            if host.netns not in state.namespaces:
                state.namespaces.append(host.netns)
                self._save(state)
            if not netns.exists(host.netns):
                hosts.create_network(self.spec, host)
            hosts.prepare(self.spec, host, where, lower, client_public, apt_files)
            state.processes = [p for p in state.processes if p.name != hosts.process_name(host)]
            init = hosts.boot(host, where, lower)
            state.processes.append(init)
            self._save(state)
            inits[host.name] = init
            booted.append(host)
        hosts.write_client_files(where, wanted)
        netns.inside(self.spec.netns, lambda: hosts.register(self.spec, self.key(), wanted))
        if booted:
            report("waiting for sshd on " + ", ".join(host.name for host in booted))
            hosts.wait_ssh(self.spec, booted, inits, READY_TIMEOUT)
        return booted

    def _stack_up(self, state: LabState, wanted: list[HostSpec], report: Report) -> None:
        """CouchDB (pouchdb-server), cozy-stack (the double) and nginx on ``wanted``, from the lab's
        apt repository, by ``cozyops server provision``: the roles production runs, run as a user
        runs them from the lab (inside its namespace). Idempotent."""
        if aptrepo.find() is None:
            raise LabError("the lab's apt repository", "is not built for this tree", "run `sudo cozyops lab setup`")
        where = self.host_files
        fleet.write(self.fleet_dir, self.spec, self.pebble().ca_bundle, self.fleet_hosts(state),
                    where.client_key, where.ssh_config)
        names = [host.name for host in wanted]
        report("provisioning " + ", ".join(names) + " (cozyops server provision)")
        log = self.logs / "provision.log"
        argv = [sys.executable, "-m", "cozyops", "server", "provision", "--fleet", str(self.fleet_dir), "--json",
                *names]
        with open(log, "ab") as err:
            result = subprocess.run(procs.netns_argv(self.spec.netns, argv), stdout=subprocess.PIPE, stderr=err,
                                    env={**os.environ, "COZYOPS_FLEET": str(self.fleet_dir)}, check=False)
        try:
            summary = json.loads(result.stdout)
        except ValueError:
            summary = None
        if result.returncode != 0 or summary is None:
            failed = sorted(h for h, counts in (summary or {}).get("hosts", {}).items()
                            if counts["failed"] or counts["unreachable"])
            raise LabError("cozyops server provision " + " ".join(names),
                           f"failed on {', '.join(failed) or 'the run'}", f"see {log}")
        state.stack = True
        state.stacked = sorted(set(state.stacked) | set(names))
        self._save(state)

    def _apt_proxy_up(self, state: LabState, targets: list[aptsources.Target], report: Report) -> None:
        running = state.process(APT_PROXY)
        if running and procs.alive(running):
            return
        allowed = aptsources.allowed(targets)
        report("apt proxy to " + ", ".join(f"{host}:{port}" for host, port in allowed))
        # The socket listens in the lab's namespace; the proxy that serves it runs in the machine's.
        listener = netns.inside(
            self.spec.netns, lambda: socket.create_server((self.spec.gateway, APT_PROXY_PORT))
        )
        with listener:
            argv = [sys.executable, "-m", "cozyops.lab.aptproxy", "--fd", str(listener.fileno())]
            for host, port in allowed:
                argv += ["--allow", f"{host}:{port}"]
            repo = aptrepo.find()
            if repo is not None:  # the lab's own apt repository, for `server provision`
                argv += ["--serve", f"{aptrepo.HOSTNAME}={repo}"]
            proc, _ = procs.spawn(
                APT_PROXY, argv, self.logs / f"{APT_PROXY}.log", pass_fds=(listener.fileno(),)
            )
        state.processes = [p for p in state.processes if p.name != APT_PROXY]
        state.processes.append(proc)
        self._save(state)

    def ssh_target(self, name: str) -> SshTarget:
        """How the controller reaches host ``name`` (h1...) over SSH; from inside the lab's namespace."""
        host = next((h for h in self.spec.hosts(self.state().hosts) if h.name == name), None)
        if host is None:
            raise LabError(f"host {name}", f"is not a host of lab {self.spec.id}")
        where = self.host_files
        return SshTarget(host.name, host.address, where.client_key, where.known_hosts)

    def fleet_hosts(self, state: LabState) -> list[dict]:
        return [
            {"name": host.name, "address": host.address, "fqdn": host.fqdn}
            for host in self.spec.hosts(state.hosts)
        ]

    def _check_namespace_is_ours(self, state: LabState) -> None:
        if netns.exists(self.spec.netns) and self.spec.netns not in state.namespaces:
            raise LabError(
                f"namespace {self.spec.netns}",
                f"exists but is not recorded in {self.state_path}",
                f"another lab with id {self.spec.id} may use another directory",
            )

    def _wait_ready(self, service: Service, popen, proc: procs.Proc) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        reason: str | None = "not started"
        while time.monotonic() < deadline:
            if popen.poll() is not None:
                raise LabError(
                    f"{service.name} (lab {self.spec.id})",
                    f"exited with status {popen.returncode}: {procs.tail(proc.log)}",
                    f"log: {proc.log}",
                )
            reason = netns.inside(self.spec.netns, service.not_ready)
            if reason is None:
                return
            time.sleep(0.05)
        raise LabError(
            f"{service.name} (lab {self.spec.id})",
            f"not ready after {READY_TIMEOUT:.0f} s: {reason}",
            f"log: {proc.log}",
        )

    def _wait_secondaries(self) -> None:
        """Each server is a secondary of the others' zones: wait until each serves its zones."""
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            missing = netns.inside(self.spec.netns, self._dns_problems)
            if not missing:
                return
            if time.monotonic() > deadline:
                raise LabError(f"lab {self.spec.id} DNS", "; ".join(missing), f"logs: {self.logs}")
            time.sleep(0.1)

    def _dns_problems(self) -> list[str]:
        return [
            f"{server['name']} ({server['address']}) {zone}: {answer['reason']}"
            for server in self.dns_servers()
            for zone, answer in self._zone_answers(server["address"], server["serves"]).items()
            if answer["reason"]
        ]

    def _zone_answers(self, address: str, zones: list[str]) -> dict[str, dict]:
        """What one server says of each of its zones: its SOA serial, or why it does not serve it."""
        answers = {}
        for zone in zones:
            serial, reason = probe.soa_reason(address, zone, tcp=True)
            answers[zone] = {"serial": serial, "reason": reason}
        return answers

    # -- down ----------------------------------------------------------------------------------

    def down(self, purge: bool = False, report: Report = _quiet) -> LabState:
        """Stop every process the lab started (by PID), remove its namespaces; idempotent."""
        setup.require_root("cozyops lab down")
        with self._locked():
            state = self.state()
            for proc in reversed(state.processes):
                if procs.alive(proc):
                    report(f"stopping {proc.name} (pid {proc.pid})")
                procs.stop(proc)
            unreaped = procs.wait_gone(state.processes)
            if unreaped:
                report("not yet reaped by init: " + ", ".join(f"{p.name} ({p.pid})" for p in unreaped))
            for name in reversed(state.namespaces):
                if netns.exists(name):
                    stragglers = hosts.kill_stragglers(name)
                    if stragglers:
                        report(f"stopped {len(stragglers)} other process(es) in {name}")
                    report(f"removing namespace {name}")
                netns.delete(name)
            leftovers = self.mounts()
            if leftovers:
                raise LabError(f"lab {self.spec.id}", "mounts remain: " + ", ".join(leftovers))
            if self.state_path.exists():
                self._save(state)
        if purge:
            shutil.rmtree(self.dir, ignore_errors=True)
        return state

    def mounts(self) -> list[str]:
        """Mount points under the lab's directory, in this mount namespace."""
        found = []
        prefix = str(self.dir) + "/"
        with open("/proc/self/mountinfo") as mountinfo:
            for line in mountinfo:
                point = line.split()[4].replace("\\040", " ")
                if point == str(self.dir) or point.startswith(prefix):
                    found.append(point)
        return found

    # -- status --------------------------------------------------------------------------------

    def dns_servers(self) -> list[dict]:
        zones = list(self.spec.zones)
        return [
            {"name": "bind", "software": "BIND 9", "process": "named", "address": self.spec.bind_address,
             "port": DNS_PORT, "primary_of": [self.spec.zone], "serves": zones},
            {"name": "knot", "software": "Knot DNS", "process": "knotd", "address": self.spec.knot_address,
             "port": DNS_PORT, "primary_of": [self.spec.zone2], "serves": zones},
            {"name": "powerdns", "software": "PowerDNS Authoritative", "process": "pdns_server",
             "address": self.spec.powerdns_address, "port": DNS_PORT, "primary_of": [self.spec.zone3],
             "serves": [self.spec.zone3], "api_url": self.spec.powerdns_api},
        ]

    def status(self) -> dict:
        state = self.state()
        up = self.is_up()
        processes = {proc.name: proc for proc in state.processes}
        pebble = self.pebble()

        def process_reason(name: str) -> str | None:
            proc = processes.get(name)
            if proc is None:
                return "not started"
            if not procs.alive(proc):
                return f"process {proc.pid} is not running (log: {proc.log})"
            return None

        servers = []
        for server in self.dns_servers():
            reason = "lab is down" if not up else process_reason(server["process"])
            servers.append({**server, "ok": False, "zones": {}, "reason": reason})
        acme = {
            "ok": False,
            "directory": self.spec.acme_directory,
            "ca_bundle": str(pebble.ca_bundle),
            "issuing_root": str(pebble.issuing_root),
            "reason": "lab is down" if not up else process_reason("pebble"),
        }

        host_entries = []
        for host in self.spec.hosts(state.hosts):
            init = processes.get(hosts.process_name(host))
            host_entries.append({
                "name": host.name,
                "address": host.address,
                "fqdn": host.fqdn,
                "netns": host.netns,
                "ssh_port": SSH_PORT,
                "pid": init.pid if init else None,
                "ok": False,
                "reason": "lab is down" if not up else process_reason(hosts.process_name(host)),
            })
        proxy = {
            "address": f"{self.spec.gateway}:{APT_PROXY_PORT}",
            "ok": False,
            "reason": "lab is down" if not up else process_reason(APT_PROXY),
        } if state.hosts else None

        def check() -> None:
            for entry in host_entries:
                if entry["reason"] is None:
                    entry["reason"] = hosts.ssh_banner_reason(entry["address"])
                    if entry["reason"] is None and state.stack:
                        entry["reason"] = self._stack_reason(entry["name"])
                    entry["ok"] = entry["reason"] is None
            if proxy and proxy["reason"] is None:
                proxy["ok"] = True
            for entry in servers:
                if entry["reason"]:
                    continue
                entry["zones"] = self._zone_answers(entry["address"], entry["serves"])
                reasons = [f"{zone}: {a['reason']}" for zone, a in entry["zones"].items() if a["reason"]]
                entry["reason"] = "; ".join(reasons) or None
                entry["ok"] = not reasons
            if acme["reason"] is None:
                try:
                    probe.acme_directory(self.spec.acme_directory, acme["ca_bundle"])
                    acme["ok"] = True
                except Exception as error:  # noqa: BLE001 - reported, not raised
                    acme["reason"] = str(error) or type(error).__name__

        if up:
            netns.inside(self.spec.netns, check)
        dns_ok = all(entry["ok"] for entry in servers)
        hosts_ok = all(entry["ok"] for entry in host_entries) and (proxy is None or proxy["ok"])
        return {
            "id": self.spec.id,
            "dir": str(self.dir),
            "up": up,
            "ok": up and dns_ok and acme["ok"] and hosts_ok,
            "zone": self.spec.zone,
            "zones": list(self.spec.zones),
            "subnet": str(self.spec.subnet),
            "netns": self.spec.netns,
            "dns": {
                "ok": dns_ok,
                "servers": servers,
                "tsig_key_file": str(self.key_file),
                "tsig_key_name": self.spec.key_name,
                "powerdns_api_key_file": str(self.powerdns_key_file),
            },
            "acme": acme,
            "hosts": host_entries,
            "apt_proxy": proxy,
            "rootfs": state.rootfs or None,
            "fleet": str(self.fleet_dir),
            "fleets": {provider: str(self.provider_fleet_dir(provider)) for provider in fleet.PROVIDERS},
            "ssh_config": str(self.host_files.ssh_config) if state.hosts else None,
            "stack": state.stack,
            "namespaces": state.namespaces,
            "pids": [proc.pid for proc in state.processes],
            "processes": [
                {"name": proc.name, "pid": proc.pid, "alive": procs.alive(proc), "log": proc.log}
                for proc in state.processes
            ],
        }

    def _stack_reason(self, name: str) -> str | None:
        """None when the host's cozy-stack answers `cozy-stack status` (call inside the namespace)."""
        try:
            with SshTransport(self.ssh_target(name), timeout=5) as ssh:
                result = ssh.run(["cozy-stack", "status"], timeout=10)
        except CozyopsError as error:
            return str(error)
        if result.returncode != 0:
            return "cozy-stack status: " + (result.stderr or result.stdout).decode(errors="replace").strip()[:200]
        return None

    def env(self) -> dict[str, str]:
        pebble = self.pebble()
        return {
            "COZYOPS_LAB_ID": self.spec.id,
            "COZYOPS_LAB_DIR": str(self.dir),
            "COZYOPS_LAB_NETNS": self.spec.netns,
            "COZYOPS_FLEET": str(self.fleet_dir),
            "COZYOPS_LAB_ZONE": self.spec.zone,
            "COZYOPS_LAB_ZONE2": self.spec.zone2,
            "COZYOPS_LAB_DNS_BIND": self.spec.bind_address,
            "COZYOPS_LAB_DNS_KNOT": self.spec.knot_address,
            "COZYOPS_LAB_ZONE3": self.spec.zone3,
            "COZYOPS_LAB_DNS_POWERDNS": self.spec.powerdns_address,
            "COZYOPS_LAB_POWERDNS_API": self.spec.powerdns_api,
            "COZYOPS_LAB_POWERDNS_API_KEY_FILE": str(self.powerdns_key_file),
            "COZYOPS_LAB_FLEET_POWERDNS": str(self.provider_fleet_dir("powerdns")),
            "COZYOPS_LAB_FLEET_LEXICON": str(self.provider_fleet_dir("lexicon")),
            "COZYOPS_LAB_TSIG_KEY_FILE": str(self.key_file),
            "COZYOPS_LAB_ACME_DIRECTORY": self.spec.acme_directory,
            "COZYOPS_LAB_ACME_CA_BUNDLE": str(pebble.ca_bundle),
            "COZYOPS_LAB_ACME_ISSUING_ROOT": str(pebble.issuing_root),
            "COZYOPS_LAB_SSH_CONFIG": str(self.host_files.ssh_config),
        }

    def exec_argv(self, command: list[str]) -> tuple[list[str], dict[str, str]]:
        """The argv and environment that run ``command`` inside the lab's namespace."""
        if not self.is_up():
            raise LabError(f"lab {self.spec.id}", "is not up", "run `cozyops lab up`")
        env = dict(os.environ)
        env.setdefault("COZYOPS_FLEET", str(self.fleet_dir))
        return procs.netns_argv(self.spec.netns, command), env
