"""The lab's hosts: Debian servers in namespaces, reached over SSH like a fresh VPS.

Each host ``hN`` has:

- a network namespace ``cozyops-<id>-hN`` with ``eth0`` on the lab's bridge (its address in the
  lab's /24 and ``hN.ZONE`` in the lab's DNS), and no route out of the lab;
- its own mount, UTS and PID namespaces (see ``hostboot``): its root is an overlay of the shared
  root filesystem (``rootfs``) and its own upper layer, ``<lab>/hosts/hN/upper``, which keeps its
  changes from one ``lab up`` to the next, as a disk would;
- a small init (``host_init``) that starts its services through their init scripts, sshd first;
- sshd with key authentication only and its own Ed25519 host key; the controller's key, a
  known_hosts file and an ssh_config under ``<lab>/ssh/``;
- apt with the machine's sources and settings, through the lab's proxy (``aptproxy``).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dns.query
import dns.rcode

from cozyops import files
from cozyops.dns.tsig import TsigKey
from cozyops.errors import LabError
from cozyops.lab import hostboot, netns, procs, rootfs, sshkeys
from cozyops.lab.spec import SSH_PORT, HostSpec, LabSpec

INIT_SOURCE = Path(__file__).with_name("host_init.py")
SSHD_DROP_IN = """\
# Written by cozyops lab: key authentication only, this host's own key.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
"""
PROXY_CONF = """\
// Written by cozyops lab: the lab's hosts reach the machine's package mirrors through this proxy.
Acquire::http::Proxy "{proxy}";
Acquire::https::Proxy "{proxy}";
"""
# Sorts after the machine's own apt settings, which the host receives as they are.
PROXY_CONF_NAME = "zz-cozyops-lab-proxy"
# invoke-rc.d asks /sbin/runlevel whether a service may start: runlevel 2, the one whose
# services the host's init starts.
RUNLEVEL_SCRIPT = """\
#!/bin/sh
# cozyops lab host: the runlevel that cozyops-lab-init runs (previous: none).
echo "N 2"
"""
PROCESS_PREFIX = "host-"


def process_name(host: HostSpec) -> str:
    return PROCESS_PREFIX + host.name


class HostFiles:
    """Where a lab keeps a host's layers and keys, and the controller's SSH files."""

    def __init__(self, lab_dir: Path) -> None:
        self.lab_dir = lab_dir

    def dir(self, host: HostSpec) -> Path:
        return self.lab_dir / "hosts" / host.name

    def host_key(self, host: HostSpec) -> Path:
        return self.dir(host) / "ssh_host_ed25519_key"

    @property
    def ssh_dir(self) -> Path:
        return self.lab_dir / "ssh"

    @property
    def client_key(self) -> Path:
        return self.ssh_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.ssh_dir / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.ssh_dir / "config"

    def console_log(self, host: HostSpec) -> Path:
        return self.lab_dir / "logs" / f"{host.name}.log"


# -- the host's upper layer -------------------------------------------------------------------


def _mkdirs(upper: Path, lower: Path, relative: str) -> Path:
    """Create ``relative`` in the upper layer with the lower layer's modes (an upper directory's
    mode wins over the lower one's in the merged view)."""
    current_upper, current_lower = upper, lower
    for part in Path(relative).parts:
        current_upper, current_lower = current_upper / part, current_lower / part
        if not current_upper.exists():
            current_upper.mkdir()
            mode = current_lower.stat().st_mode & 0o7777 if current_lower.is_dir() else 0o755
            current_upper.chmod(mode)
    return current_upper


def _put(upper: Path, lower: Path, path: str, content: str | bytes, mode: int = 0o644) -> None:
    relative = path.lstrip("/")
    _mkdirs(upper, lower, str(Path(relative).parent))
    files.write_atomic(upper / relative, content, mode)


def prepare(
    spec: LabSpec, host: HostSpec, where: HostFiles, lower: Path, client_public: str, apt_files: dict[str, Path]
) -> None:
    """Write what makes the shared root filesystem this host, into its upper layer (host not running).

    ``apt_files`` are the machine's apt sources, settings and keyrings (``aptsources.files_to_mirror``)."""
    base = where.dir(host)
    upper = base / "upper"
    for sub in ("upper", "work", "root"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    host_public = sshkeys.ensure_key(where.host_key(host), f"root@{host.name}")
    _put(upper, lower, "/etc/hostname", f"{host.name}\n")
    _put(upper, lower, "/etc/hosts", f"127.0.0.1\tlocalhost\n{host.address}\t{host.fqdn} {host.name}\n"
         "::1\tlocalhost ip6-localhost ip6-loopback\n")
    _put(upper, lower, "/etc/resolv.conf",
         f"search {spec.zone}\nnameserver {spec.bind_address}\nnameserver {spec.knot_address}\n")
    if not (upper / "etc" / "machine-id").exists():
        _put(upper, lower, "/etc/machine-id", secrets.token_hex(16) + "\n", 0o444)
    _put(upper, lower, "/etc/ssh/ssh_host_ed25519_key", where.host_key(host).read_bytes(), 0o600)
    _put(upper, lower, "/etc/ssh/ssh_host_ed25519_key.pub", f"{host_public} root@{host.name}\n")
    _put(upper, lower, "/etc/ssh/sshd_config.d/cozyops-lab.conf", SSHD_DROP_IN)
    _put(upper, lower, "/root/.ssh/authorized_keys", f"{client_public} cozyops-lab-controller\n", 0o600)
    (upper / "root" / ".ssh").chmod(0o700)
    rootfs.install_apt_files(upper, apt_files, lower=lower)
    _put(upper, lower, f"/etc/apt/apt.conf.d/{PROXY_CONF_NAME}", PROXY_CONF.format(proxy=spec.apt_proxy))
    _put(upper, lower, hostboot.INIT, INIT_SOURCE.read_bytes(), 0o755)
    # The host has no init package: its /sbin/init is cozyops's (invoke-rc.d starts services only
    # where /sbin/init exists), and /sbin/runlevel answers for it. Package files win if installed.
    if not (lower / "usr" / "sbin" / "runlevel").exists():
        _put(upper, lower, "/usr/sbin/runlevel", RUNLEVEL_SCRIPT, 0o755)
    init_link = _mkdirs(upper, lower, "usr/sbin") / "init"
    if not (lower / "usr" / "sbin" / "init").exists() and not init_link.is_symlink():
        init_link.symlink_to(hostboot.INIT)


# -- network and boot ---------------------------------------------------------------------------


def create_network(spec: LabSpec, host: HostSpec) -> None:
    """The host's namespace, with eth0 on the lab's bridge (both ends created inside namespaces)."""
    netns.create(host.netns)
    netns.ip("-n", spec.netns, "link", "add", host.name, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
    netns.ip("-n", spec.netns, "link", "set", host.name, "master", "br0", "up")
    netns.ip("-n", host.netns, "addr", "add", f"{host.address}/{spec.subnet.prefixlen}", "dev", "eth0")
    netns.ip("-n", host.netns, "link", "set", "eth0", "up")


def boot(host: HostSpec, where: HostFiles, lower: Path) -> procs.Proc:
    """Start the host's init in its namespaces; returns the init's record (PID as the machine sees it)."""
    base = where.dir(host)
    log = where.console_log(host)
    log.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "name": host.name,
        "lower": str(lower),
        "upper": str(base / "upper"),
        "work": str(base / "work"),
        "root": str(base / "root"),
        "log": str(log),
    }
    argv = procs.netns_argv(host.netns, [sys.executable, "-m", "cozyops.lab.hostboot", json.dumps(config)])
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise LabError(f"host {host.name}", (result.stderr.strip() or f"boot failed (exit {result.returncode})"),
                       f"console: {log}")
    pid = int(result.stdout.strip())
    return procs.Proc(process_name(host), pid, procs.start_time(pid), (hostboot.INIT,), str(log))


def ssh_banner_reason(address: str, timeout: float = 1.0) -> str | None:
    """None when an SSH server answers at address:22 (call inside the lab's namespace)."""
    try:
        with socket.create_connection((address, SSH_PORT), timeout=timeout) as connection:
            connection.settimeout(timeout)
            banner = connection.recv(64)
    except OSError as error:
        return f"ssh {address}:{SSH_PORT}: {error.strerror or error}"
    if not banner.startswith(b"SSH-2.0"):
        return f"ssh {address}:{SSH_PORT}: unexpected banner {banner[:20]!r}"
    return None


def register(spec: LabSpec, key: TsigKey, hosts: list[HostSpec]) -> None:
    """``hN.ZONE A address`` for each host, at the zone's primary (call inside the lab's namespace)."""
    if not hosts:
        return
    update = key.update(spec.zone)
    for host in hosts:
        update.replace(f"{host.fqdn}.", 300, "A", host.address)
    primary = spec.bind_address if spec.primary_of(spec.zone) == "bind" else spec.knot_address
    answer = dns.query.tcp(update, primary, timeout=5)
    if answer.rcode() != dns.rcode.NOERROR:
        raise LabError(f"DNS names of the hosts in {spec.zone}", dns.rcode.to_text(answer.rcode()))


def write_client_files(where: HostFiles, hosts: list[HostSpec]) -> None:
    """known_hosts and ssh_config for every host of the lab."""
    entries = [
        sshkeys.KnownHost((host.name, host.fqdn, host.address), sshkeys.public_line(where.host_key(host)))
        for host in hosts
    ]
    files.write_atomic(where.known_hosts, sshkeys.known_hosts(entries))
    files.write_atomic(
        where.ssh_config,
        sshkeys.ssh_config([(h.name, h.fqdn, h.address) for h in hosts], where.client_key, where.known_hosts),
    )


def wait_ssh(spec: LabSpec, hosts: list[HostSpec], inits: dict[str, procs.Proc], timeout: float) -> None:
    """Wait until sshd answers on every host; an init that ends or a deadline is an error."""
    deadline = time.monotonic() + timeout
    waiting = list(hosts)
    while True:
        for host in waiting:
            init = inits[host.name]
            if not procs.alive(init):
                raise LabError(f"host {host.name}", f"its init ended: {procs.tail(init.log)}", f"console: {init.log}")
        reasons = netns.inside(spec.netns, lambda left=waiting: {h.name: ssh_banner_reason(h.address, 0.5)
                                                                 for h in left})
        waiting = [host for host in waiting if reasons[host.name]]
        if not waiting:
            return
        if time.monotonic() > deadline:
            host = waiting[0]
            raise LabError(f"host {host.name}", f"no SSH after {timeout:.0f} s: {reasons[host.name]}",
                           f"console: {inits[host.name].log}")
        time.sleep(0.05)


def kill_stragglers(namespace: str) -> list[int]:
    """End any process still in a namespace of the lab (say, one a user started with ip netns exec)."""
    result = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True)
    pids = [int(pid) for pid in result.stdout.split()] if result.returncode == 0 else []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 3
    while any(procs.pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if procs.pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return pids
