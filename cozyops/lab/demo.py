"""`cozyops lab demo`: show, step by step, that the lab's services work.

Each step is a function run inside the lab's namespace; it returns a one-line detail or raises.
Later issues add steps (provisioning, a v2 import) to the same list.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.update
import dns.xfr
import dns.zone

from cozyops.dns.tsig import TsigKey
from cozyops.errors import LabError
from cozyops.lab import netns, probe, procs, sshkeys
from cozyops.lab.lab import Lab
from cozyops.lab.spec import HostSpec

PROPAGATION_DEADLINE = 10.0


@dataclass
class Step:
    title: str
    run: Callable[[], str]


@dataclass
class StepResult:
    title: str
    ok: bool
    detail: str
    seconds: float


def _txt(address: str, name: str) -> list[str]:
    response = dns.query.udp(dns.message.make_query(name, dns.rdatatype.TXT), address, timeout=1)
    return [b"".join(rdata.strings).decode() for rrset in response.answer for rdata in rrset]


def update_propagates(lab: Lab, key: TsigKey, zone: str) -> str:
    """A TSIG-signed UPDATE to the zone's primary is served by its secondary."""
    servers = {server["name"]: server["address"] for server in lab.dns_servers()}
    primary = lab.spec.primary_of(zone)
    secondary = "knot" if primary == "bind" else "bind"
    name, token = f"_cozyops-demo.{zone}.", secrets.token_hex(8)
    update = key.update(zone)
    update.add(name, 60, "TXT", f'"{token}"')
    started = time.monotonic()
    answer = dns.query.tcp(update, servers[primary], timeout=5)
    if answer.rcode() != dns.rcode.NOERROR:
        raise LabError(f"update of {zone} at {primary}", dns.rcode.to_text(answer.rcode()))
    try:
        while token not in _txt(servers[secondary], name):
            if time.monotonic() - started > PROPAGATION_DEADLINE:
                raise LabError(
                    f"{secondary} ({servers[secondary]})",
                    f"does not serve {name} {PROPAGATION_DEADLINE:.0f} s after the update",
                )
            time.sleep(0.02)
        elapsed = time.monotonic() - started
    finally:
        cleanup = key.update(zone)
        cleanup.delete(name, "TXT")
        dns.query.tcp(cleanup, servers[primary], timeout=5)
    return (
        f"TXT {name} added at {primary} ({servers[primary]}), "
        f"served by {secondary} ({servers[secondary]}) after {elapsed * 1000:.0f} ms"
    )


def api_write_propagates(lab: Lab) -> str:
    """A TXT record written through PowerDNS's HTTP API is served by BIND and Knot, its secondaries
    (PowerDNS's NOTIFY, then AXFR, both signed); a wrong API key is refused."""
    import requests

    zone, key = lab.spec.zone3, lab.powerdns_api_key()
    name, token = f"_cozyops-demo.{zone}.", secrets.token_hex(8)
    url = f"{lab.spec.powerdns_api}/api/v1/servers/localhost/zones/{zone}."

    def patch(records: list[str], api_key: str) -> int:
        rrset = {"name": name, "type": "TXT", "ttl": 60, "changetype": "REPLACE" if records else "DELETE",
                 "records": [{"content": f'"{value}"', "disabled": False} for value in records]}
        return requests.patch(url, json={"rrsets": [rrset]}, headers={"X-API-Key": api_key}, timeout=5).status_code

    if patch([token], "not-the-key") != 401:
        raise LabError(f"PowerDNS API {lab.spec.powerdns_api}", "accepted a wrong API key")
    started = time.monotonic()
    status = patch([token], key)
    if status != 204:
        raise LabError(f"PowerDNS API {lab.spec.powerdns_api}", f"PATCH answered HTTP {status}")
    servers = {"BIND": lab.spec.bind_address, "Knot": lab.spec.knot_address}
    try:
        while not all(token in _txt(address, name) for address in servers.values()):
            if time.monotonic() - started > PROPAGATION_DEADLINE:
                late = [server for server, address in servers.items() if token not in _txt(address, name)]
                raise LabError(", ".join(late), f"does not serve {name} {PROPAGATION_DEADLINE:.0f} s after the write")
            time.sleep(0.05)
        elapsed = time.monotonic() - started
    finally:
        patch([], key)
    return f"TXT {name} written through PowerDNS's API, served by BIND and Knot after {elapsed * 1000:.0f} ms"


def unsigned_refused(lab: Lab) -> str:
    """Updates and zone transfers without the key are refused by both servers."""
    outcomes = []
    for server in lab.dns_servers():
        for zone in server["serves"]:
            update = dns.update.UpdateMessage(f"{zone}.")
            update.add(f"intruder.{zone}.", 60, "A", "192.0.2.1")
            rcode = dns.query.tcp(update, server["address"], timeout=5).rcode()
            if rcode == dns.rcode.NOERROR:
                raise LabError(f"{server['name']} {zone}", "accepted an unsigned UPDATE")
            try:
                dns.zone.from_xfr(dns.query.xfr(server["address"], zone, timeout=5))
            except (dns.xfr.TransferError, dns.exception.FormError, EOFError, ConnectionError):
                pass
            else:
                raise LabError(f"{server['name']} {zone}", "allowed an unsigned zone transfer")
            outcomes.append(dns.rcode.to_text(rcode))
    rcodes = ", ".join(sorted(set(outcomes)))
    return f"unsigned UPDATE and AXFR refused by every server for each of its zones ({rcodes})"


def serves_both_zones(lab: Lab, server: dict) -> str:
    serials = [
        f"{zone} serial {probe.soa_serial(server['address'], zone)}" for zone in server["serves"]
    ]
    return f"{server['software']} at {server['address']}:{server['port']}: " + ", ".join(serials)


def acme_answers(lab: Lab) -> str:
    pebble = lab.pebble()
    directory = probe.acme_directory(lab.spec.acme_directory, str(pebble.ca_bundle))
    endpoints = sorted(key for key in directory if key != "meta")
    return f"{lab.spec.acme_directory}: {', '.join(endpoints)}; issuing root in {pebble.issuing_root}"


def ssh(lab: Lab, host: HostSpec, command: str, timeout: float = 60) -> str:
    """Run ``command`` on a host with ``ssh -F <the lab's ssh_config>``, as a user would."""
    argv = ["ssh", "-F", str(lab.host_files.ssh_config), host.name, command]
    result = subprocess.run(procs.netns_argv(lab.spec.netns, argv), capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise LabError(f"ssh {host.name} {command}", result.stderr.strip() or f"exit {result.returncode}")
    return result.stdout


def ssh_verified(lab: Lab, host: HostSpec) -> str:
    """SSH with strict host key checking against the lab's known_hosts; the host names itself."""
    name = ssh(lab, host, "hostname").strip()
    if name != host.name:
        raise LabError(f"ssh {host.name}", f"answered as {name!r}")
    public = sshkeys.public_line(lab.host_files.host_key(host))
    return (
        f"ssh -F {lab.host_files.ssh_config} {host.name} hostname -> {name}; "
        f"host key {sshkeys.fingerprint(public)} verified against {lab.host_files.known_hosts}"
    )


def apt_through_proxy(lab: Lab, host: HostSpec) -> str:
    """The host's apt reaches the machine's mirrors, through the lab's proxy only."""
    output = ssh(lab, host, "apt-get -q update")
    fetched = [line for line in output.splitlines() if line.startswith(("Hit:", "Get:"))]
    if not fetched:
        raise LabError(f"apt-get update on {host.name}", "fetched nothing")
    return f"apt-get update on {host.name}: {len(fetched)} indexes through {lab.spec.apt_proxy}"


def stack_answers(lab: Lab, host: HostSpec) -> str:
    """The host's cozy-stack double, reached as cozyops reaches a real one: the fleet's server,
    SSH, then forwarded ports (cozyops.stack.connect)."""
    from cozyops import inventory
    from cozyops.stack.connect import ADMIN_PORT, PUBLIC_PORT, connect

    fleet = inventory.load(lab.fleet_dir)
    with connect(fleet, fleet.servers[host.name]) as stack:
        count = len(stack.admin.instances())
        version = stack.public(host.fqdn).version().get("version", "?")
    return (f"{host.name}: admin API (127.0.0.1:{ADMIN_PORT} over SSH) lists {count} instance(s); "
            f"public API (127.0.0.1:{PUBLIC_PORT}) version {version}")


FLEET_INSTANCES = (("alice", "h1"), ("bob", "h2"))


def demo_fleet(lab: Lab) -> None:
    """Give the lab's fleet a small fleet (alice on h1, bob on h2) when its instances.yml is still empty."""
    import yaml

    path = lab.fleet_dir / "instances.yml"
    data = yaml.safe_load(path.read_text()) or {}
    if data.get("instances"):
        return
    from cozyops import inventory

    servers = inventory.load(lab.fleet_dir).servers
    entries = "".join(
        f"  - domain: {name}.{lab.spec.zone}\n    server: {server}\n    apps: [home, drive, photos, settings, store]\n"
        f"    email: {name}@{lab.spec.zone}\n    locale: en\n"
        for name, server in FLEET_INSTANCES if server in servers)
    path.write_text(
        path.read_text().replace("instances: []\n", "")
        + f"# Added by `cozyops lab demo` (the file was empty); yours to edit.\ninstances:\n{entries}"
    )


def _cozyops(lab: Lab, *args: str, timeout: float = 3600) -> dict:
    """Run `cozyops ARGS --json --fleet <the lab's fleet>` as a user would; its JSON, or a LabError
    with its last line (the whole output appended to the lab's demo log)."""
    import json
    import sys

    log = lab.logs / "demo-fleet.log"
    argv = [sys.executable, "-m", "cozyops", *args, "--json", "--fleet", str(lab.fleet_dir)]
    with open(log, "a") as err:
        err.write(f"$ cozyops {' '.join(args)}\n")
        err.flush()
        result = subprocess.run(procs.netns_argv(lab.spec.netns, argv), stdout=subprocess.PIPE, stderr=err,
                                text=True, timeout=timeout)
    try:
        data = json.loads(result.stdout) if result.stdout.strip() else {}
    except ValueError:
        data = {}
    if result.returncode != 0:
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        raise LabError(f"cozyops {' '.join(args)}", lines[-1] if lines else f"exit {result.returncode}", f"see {log}")
    return data


def _summary(counts: dict) -> str:
    return ", ".join(f"{kind} +{c['create']} ~{c['update']} -{c['delete']}" for kind, c in counts.items()
                     if any(c.values())) or "nothing to do"


def fleet_plan_and_apply(lab: Lab) -> str:
    """`cozyops plan`, then `cozyops apply --checksum` of that very plan: the small fleet's
    instances created on their servers, their DNS records, certificates and nginx sites."""
    plan = _cozyops(lab, "plan")
    summary = _summary(plan["counts"])
    if summary == "nothing to do":
        return f"plan {plan['checksum']}: nothing to do (applied by an earlier demo)"
    report = _cozyops(lab, "apply", "--checksum", plan["checksum"])
    return f"plan {plan['checksum']}: {summary}; applied: {len(report['done'])} done, 0 failed"


def fleet_second_plan(lab: Lab) -> str:
    """A second `cozyops plan` has nothing left to do."""
    plan = _cozyops(lab, "plan")
    summary = _summary(plan["counts"])
    if summary != "nothing to do":
        raise LabError("the second cozyops plan", f"still plans: {summary}")
    foreign = len(plan.get("not_in_fleet", []))
    return f"plan {plan['checksum']}: nothing to do ({foreign} instance(s) on the servers not the fleet's, untouched)"


def instances_on_their_servers(lab: Lab) -> str:
    """Each instance of the fleet exists on its server's cozy-stack (created through
    ``cozyops.instances.lifecycle`` as `cozyops apply` does) and is the fleet's (``state.Owned``)."""
    from cozyops import inventory, state
    from cozyops.instances import lifecycle
    from cozyops.stack.connect import connect

    fleet = inventory.load(lab.fleet_dir)
    created, present = [], []
    for instance in fleet.instances:
        with connect(fleet, fleet.servers[instance.server]) as stack:
            if lifecycle.show(stack, instance.domain) is None:
                lifecycle.create(stack, instance)
                created.append(f"{instance.domain} on {instance.server}")
            else:
                present.append(instance.domain)
        with state.Owned(fleet.state_dir) as owned:
            if owned.get("instance", instance.domain) is None:
                owned.put("instance", instance.domain, instance.server, "created",
                          {k: v for k, v in instance.settings().items() if k in lifecycle.SETTINGS_ONLY})
    return f"created {', '.join(created) or 'none'}; already there: {', '.join(present) or 'none'}"


def dns_for_the_fleet(lab: Lab) -> str:
    """`cozyops dns apply` on the lab's fleet: every instance's records, served by both servers."""
    from cozyops import inventory
    from cozyops.dns.manager import DnsManager

    manager = DnsManager(inventory.load(lab.fleet_dir))
    with manager.locked("cozyops lab demo"):
        plan = manager.plan()
        manager.approve(plan, None, force=False)
        report = manager.apply_and_wait(plan)
    if not report.propagated:
        raise LabError("dns apply", "not served by every authoritative server")
    instance = manager.fleet.instances[0]
    app = f"drive.{instance.domain}" if manager.fleet.subdomains == "nested" else \
        instance.domain.replace(".", "-drive.", 1)
    answers = {server["name"]: _a(server["address"], app) for server in lab.dns_servers()
               if manager.fleet.zone in server["serves"]}
    wanted = manager.fleet.servers[instance.server].ipv4
    if any(answer != [wanted] for answer in answers.values()):
        raise LabError(f"DNS for {app}", f"answers {answers}, not {wanted}")
    return (f"{len(plan.record_changes)} record change(s) applied ({len(manager.fleet.instances)} instance(s)); "
            f"{app} -> {wanted} at BIND and Knot")


def certificates_for_the_fleet(lab: Lab) -> str:
    """`cozyops cert issue` on the lab's fleet: each instance's wildcard certificate from pebble
    (DNS-01 through BIND and Knot), its names and its chain checked against pebble's root."""
    from cryptography import x509
    from cryptography.x509.verification import PolicyBuilder, Store

    from cozyops import inventory
    from cozyops.tls.manager import CertManager
    from cozyops.tls.store import split_chain

    manager = CertManager(inventory.load(lab.fleet_dir))
    try:
        with manager.locked("cozyops lab demo"):
            result = manager.execute(manager.plan().todo)
        if result.failed:
            raise LabError("cert issue", "; ".join(f"{name}: {why}" for name, why in sorted(result.failed.items())))
        spec = manager.specs()[0]
        pems = split_chain(manager.store.fullchain(spec.name).read_text())
        leaf = x509.load_pem_x509_certificate(pems[0].encode())
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
        if sorted(names) != sorted(spec.domains):
            raise LabError(f"certificate {spec.name}", f"names {names}, not {list(spec.domains)}")
        root = x509.load_pem_x509_certificate(lab.pebble().issuing_root.read_bytes())
        verifier = PolicyBuilder().store(Store([root])).build_server_verifier(x509.DNSName(spec.domains[0]))
        verifier.verify(leaf, [x509.load_pem_x509_certificate(pem.encode()) for pem in pems[1:]])
        record = manager.store.records()[spec.name]
    finally:
        manager.close()
    return (f"{len(result.issued)} issued, {len(manager.specs()) - len(result.issued)} already valid; "
            f"{spec.name}: {' + '.join(spec.domains)}, chain verified against pebble's root, "
            f"serial {record.serial}, until {record.not_after:%Y-%m-%d}")


INSTALL_INSTANCE = "demo"


def install_on_a_fresh_host(lab: Lab, host: HostSpec) -> str:
    """`cozyops install` as a self-hoster runs it, against a fresh Debian host of the lab, into the
    lab's fleet: provisioning, DNS, the wildcard certificate, the instance, the onboarding link."""
    import re
    import sys

    domain = f"{INSTALL_INSTANCE}.{lab.spec.zone}"
    argv = [sys.executable, "-m", "cozyops", "install", domain, "--email", f"{INSTALL_INSTANCE}@{lab.spec.zone}",
            "--host", host.name, "--fleet", str(lab.fleet_dir)]
    log = lab.logs / "demo-install.log"
    with open(log, "a") as err:
        result = subprocess.run(procs.netns_argv(lab.spec.netns, argv), stdout=subprocess.PIPE, stderr=err,
                                text=True, timeout=3600)
    if result.returncode != 0:
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        raise LabError(f"cozyops install {domain} --host {host.name}", lines[-1] if lines else "failed",
                       f"see {log}")
    steps = re.findall(r"^  (\w+): (done|ok)", log.read_text().split("installing ")[-1], re.M)
    changed = [step for step, status in steps if status == "done"]
    link = "onboarding link printed (its token elided here)" if "registerToken=" in result.stdout else \
        "already onboarded"
    what = f"steps done: {', '.join(changed)}" if changed else "nothing to do (installed by an earlier demo)"
    return f"{domain} on {host.name}: {what}; {link}; log {log}"


def https_on_app_subdomains(lab: Lab, host: HostSpec, apps: tuple[str, ...], name: str = INSTALL_INSTANCE) -> str:
    """Each app of the instance ``name`` over HTTPS through nginx on the host, the certificate
    verified against pebble's issuing root for the app's own name."""
    import socket
    import ssl

    domain = f"{name}.{lab.spec.zone}"
    context = ssl.create_default_context(cafile=str(lab.pebble().issuing_root))
    seen = []
    for app in apps:
        name = f"{app}.{domain}"
        with socket.create_connection((host.address, 443), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=name) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            head = tls.recv(4096).decode("latin-1").split("\r\n")
        status = head[0].split()[1] if len(head[0].split()) > 1 else "?"
        server = next((line.split(":", 1)[1].strip() for line in head if line.lower().startswith("server:")), "")
        if not server.startswith("nginx") or status.startswith("5"):
            raise LabError(f"https://{name}/", f"answered {status} through {server or 'no named server'}")
        seen.append(f"{app} {status}")
    return f"https://APP.{domain}/ through nginx, verified against pebble's root: {', '.join(seen)}"


def _a(address: str, name: str) -> list[str]:
    response = dns.query.udp(dns.message.make_query(name, dns.rdatatype.A), address, timeout=1)
    return [rdata.address for rrset in response.answer for rdata in rrset if rrset.rdtype == dns.rdatatype.A]


def steps(lab: Lab, install_on: HostSpec | None = None) -> list[Step]:
    """The demo's steps; ``install_on``: a fresh host that `cozyops install` turns into a Cozy."""
    key = lab.key()
    bind, knot, powerdns = lab.dns_servers()
    found = [
        Step("BIND answers for the three zones", lambda: serves_both_zones(lab, bind)),
        Step("Knot answers for the three zones", lambda: serves_both_zones(lab, knot)),
        Step(f"PowerDNS answers for {lab.spec.zone3}", lambda: serves_both_zones(lab, powerdns)),
        Step(
            f"an update through BIND ({lab.spec.zone}) is served by Knot",
            lambda: update_propagates(lab, key, lab.spec.zone),
        ),
        Step(
            f"an update through Knot ({lab.spec.zone2}) is served by BIND",
            lambda: update_propagates(lab, key, lab.spec.zone2),
        ),
        Step(f"a write through PowerDNS's API ({lab.spec.zone3}) is served by BIND and Knot",
             lambda: api_write_propagates(lab)),
        Step("updates and transfers need the TSIG key", lambda: unsigned_refused(lab)),
        Step("the ACME directory answers", lambda: acme_answers(lab)),
    ]
    hosts = lab.spec.hosts(lab.state().hosts)
    for host in hosts:
        found.append(Step(f"SSH to {host.name} with a verified host key", lambda h=host: ssh_verified(lab, h)))
    if hosts:
        found.append(Step(f"apt on {hosts[0].name} through the lab's proxy", lambda: apt_through_proxy(lab, hosts[0])))
    if lab.state().stack and install_on is not None:
        from cozyops.model import DEFAULT_APPS

        found.append(Step(f"cozyops install {INSTALL_INSTANCE}.{lab.spec.zone} --host {install_on.name} "
                          "(a fresh Debian host)", lambda: install_on_a_fresh_host(lab, install_on)))
        found.append(Step(f"HTTPS on the app subdomains of {INSTALL_INSTANCE}.{lab.spec.zone}",
                          lambda: https_on_app_subdomains(lab, install_on, DEFAULT_APPS)))
    if lab.state().stack:
        for host in hosts:
            found.append(Step(f"the cozy-stack double on {host.name} answers through SSH forwarding",
                              lambda h=host: stack_answers(lab, h)))
        demo_fleet(lab)
        found.append(Step("a small fleet through cozyops plan, then cozyops apply --checksum (instances, DNS, "
                          "certificates, sites)", lambda: fleet_plan_and_apply(lab)))
        found.append(Step("a second cozyops plan has nothing to do", lambda: fleet_second_plan(lab)))
        alice = next(h for h in hosts if h.name == FLEET_INSTANCES[0][1])
        found.append(Step(f"HTTPS on the app subdomains of {FLEET_INSTANCES[0][0]}.{lab.spec.zone} (the fleet's)",
                          lambda: https_on_app_subdomains(lab, alice, ("drive", "photos"), FLEET_INSTANCES[0][0])))
    return found


def run_step(lab: Lab, step: Step) -> StepResult:
    started = time.monotonic()
    try:
        detail = netns.inside(lab.spec.netns, step.run)
        ok = True
    except Exception as error:  # noqa: BLE001 - a failed step is reported, the demo goes on
        detail, ok = str(error) or type(error).__name__, False
    return StepResult(step.title, ok, detail, time.monotonic() - started)
