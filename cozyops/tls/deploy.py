"""Deploy certificates to nginx over a transport: copy, test, reload, verify by a TLS handshake.

On the server, ``<dir>/<name>/fullchain.pem`` and ``privkey.pem`` (0600). When the server already
has these very files and serves the certificate, nothing is done (a daily timer may deploy
everything). Otherwise the files in place are kept aside first, the new ones are written
atomically, and ``nginx -t`` must accept them, else the old ones are put back (or the new ones
removed when there were none) and that certificate is not deployed. The certificates of one server
share one reload. After it, a TLS handshake with SNI (through the transport's port forwarding, or
to a given address) must show each new certificate: nginx's workers take the new one within
moments, so the handshake is retried for a few seconds.
"""

from __future__ import annotations

import contextlib
import shlex
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cozyops.errors import CozyopsError
from cozyops.model import Fleet
from cozyops.tls.policy import CertSpec
from cozyops.tls.store import CertStore, split_chain
from cozyops.transport.base import Transport, TransportError

REMOTE_DIR = "/etc/ssl/cozyops"
VERIFY_SECONDS = 10.0


class DeployError(CozyopsError):
    """A deployment failed; the server keeps the files it had."""


@dataclass
class Deployed:
    host: str
    name: str
    fullchain: str
    privkey: str
    serial: str
    verified: bool
    changed: bool = True  # False: the server had these files and served the certificate already


def servers_of(fleet: Fleet, spec: CertSpec) -> list[str]:
    """The servers that need the certificate: those of the instances it covers (a flat-mode
    certificate for the zone goes to every server with an instance under it)."""
    return sorted({instance.server for instance in fleet.instances if instance.domain in spec.instances})


def served_certificate(host: str, port: int, server_name: str, timeout: float = 5.0) -> x509.Certificate:
    """The leaf certificate a TLS server presents for ``server_name`` (SNI); not validated."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            context.wrap_socket(raw, server_hostname=server_name) as tls:
        der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der)


def _fingerprint(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _wait_served(check: Callable[[str], x509.Certificate], server_name: str,
                 leaf: x509.Certificate, seconds: float = VERIFY_SECONDS) -> tuple[bool, x509.Certificate | None]:
    """Handshakes until ``leaf`` is served (nginx's workers take a reload within moments)."""
    end = time.monotonic() + seconds
    served = None
    while True:
        try:
            served = check(server_name)
            if _fingerprint(served) == _fingerprint(leaf):
                return True, served
        except (OSError, ssl.SSLError, CozyopsError):
            served = None
        if time.monotonic() >= end:
            return False, served
        time.sleep(0.2)


@dataclass(frozen=True)
class Item:
    """One certificate to put on a server: its name, files, and a name to ask for by SNI."""

    name: str
    fullchain_pem: bytes
    key_pem: bytes
    server_name: str


def deploy(transport: Transport, name: str, fullchain_pem: bytes, key_pem: bytes, server_name: str,
           remote_dir: str = REMOTE_DIR, reload: str = "service nginx reload",
           check: Callable[[str], x509.Certificate] | None = None, port: int = 443) -> Deployed:
    """Install the certificate ``name`` on the server and reload nginx; verify what it serves.

    ``check(server_name)`` returns the certificate served for that name; by default a handshake
    through the transport's forwarding of ``port``.
    """
    (outcome,) = deploy_many(transport, [Item(name, fullchain_pem, key_pem, server_name)], remote_dir, reload,
                             check, port)
    if isinstance(outcome, DeployError):
        raise outcome
    return outcome


def deploy_many(transport: Transport, items: list[Item], remote_dir: str = REMOTE_DIR,
                reload: str = "service nginx reload", check: Callable[[str], x509.Certificate] | None = None,
                port: int = 443) -> list[Deployed | DeployError]:
    """Every certificate of ``items`` on one server, with one reload: for each, in order, what was
    done (a Deployed) or why not (a DeployError; the server keeps its previous files for it)."""
    host = transport.name
    outcomes: list[Deployed | DeployError | None] = [None] * len(items)
    installed: list[tuple[int, x509.Certificate, str, str]] = []
    with contextlib.ExitStack() as stack:
        if check is None:  # one forwarding for every handshake
            forward = stack.enter_context(transport.forward(port))

            def check(sni: str) -> x509.Certificate:
                return served_certificate(forward.local_host, forward.local_port, sni)

        todo: list[_Files] = []
        for index, item in enumerate(items):
            folder = f"{remote_dir.rstrip('/')}/{item.name}"
            chain, key = f"{folder}/fullchain.pem", f"{folder}/privkey.pem"
            leaf = x509.load_pem_x509_certificate(split_chain(item.fullchain_pem.decode())[0].encode())
            if _remote(transport, chain) == item.fullchain_pem and _remote(transport, key) == item.key_pem \
                    and _wait_served(check, item.server_name, leaf, seconds=0)[0]:
                outcomes[index] = Deployed(host, item.name, chain, key, f"{leaf.serial_number:x}", True, changed=False)
            else:
                todo.append(_Files(index, item, folder, chain, key, leaf))
        if todo:
            refused = _install(transport, todo)
            for entry in todo:
                if entry.index in refused:
                    outcomes[entry.index] = refused[entry.index]
                else:
                    installed.append((entry.index, entry.leaf, entry.chain, entry.key))
        if installed:
            transport.run(reload).check(host)
            q = shlex.quote
            transport.run(" ".join(f"rm -f {q(chain)}.old {q(key)}.old;" for _, _, chain, key in installed)).check(host)
        for index, leaf, chain, key in installed:
            item = items[index]
            verified, served = _wait_served(check, item.server_name, leaf)
            if verified:
                outcomes[index] = Deployed(host, item.name, chain, key, f"{leaf.serial_number:x}", True)
                continue
            what = f"serial {served.serial_number:x}" if served is not None else "no certificate (no TLS answer)"
            status = transport.run("service nginx status")
            state = (status.stdout + status.stderr).decode(errors="replace").strip().splitlines()
            outcomes[index] = DeployError(
                f"certificate {item.name} on {host}",
                f"after the reload, {item.server_name} is served {what}, not the new serial {leaf.serial_number:x} "
                f"(service nginx status: {state[-1] if state else status.returncode})")
    return outcomes  # type: ignore[return-value]


def _remote(transport: Transport, path: str) -> bytes | None:
    try:
        return transport.get(path)
    except TransportError:
        return None


@dataclass(frozen=True)
class _Files:
    index: int
    item: Item
    folder: str
    chain: str
    key: str
    leaf: x509.Certificate


def _install(transport: Transport, todo: list[_Files]) -> dict[int, DeployError]:
    """Every new pair of files in place (the previous ones kept aside as .old), then ``nginx -t``.
    Several new sites may need each other's files, so they are tested together; when nginx refuses
    a file of one of them, that one is put back and the rest tested again; when it refuses
    something else, all are put back. Returns the refused ones."""
    host, q = transport.name, shlex.quote

    def put_back(entries: list[_Files]) -> None:
        paths = " ".join(f"{q(e.chain)} {q(e.key)}" for e in entries)
        transport.run(f"for f in {paths}; do if [ -e \"$f.old\" ]; then mv -f \"$f.old\" \"$f\"; "
                      f"else rm -f \"$f\"; fi; done").check(host)

    paths = " ".join(f"{q(e.chain)} {q(e.key)}" for e in todo)
    folders = " ".join(q(e.folder) for e in todo)
    transport.run(f"mkdir -p {folders} && chmod 755 {folders} && for f in {paths}; do if [ -e \"$f\" ]; "
                  f"then cp -p \"$f\" \"$f.old\"; else rm -f \"$f.old\"; fi; done").check(host)
    for entry in todo:
        transport.put(entry.item.key_pem, entry.key, 0o600)
        transport.put(entry.item.fullchain_pem, entry.chain, 0o644)
    refused: dict[int, DeployError] = {}
    pending = list(todo)
    while pending:
        test = transport.run("nginx -t")
        if test.returncode == 0:
            break
        text = test.stderr.decode(errors="replace")
        lines = [line for line in text.splitlines() if "emerg" in line or "failed" in line] \
            or text.strip().splitlines()[-1:] or [f"exit status {test.returncode}"]
        culprits = [e for e in pending if f"{e.folder}/" in lines[0]] or list(pending)
        put_back(culprits)
        for entry in culprits:
            pending.remove(entry)
            refused[entry.index] = DeployError(f"certificate {entry.item.name} on {host}",
                                               f"nginx -t refuses it, the previous files are kept: {lines[0]}")
    return refused


@dataclass
class FleetDeployment:
    """What a deployment to the fleet's servers did: each certificate deployed, on which server,
    and what failed (``"name on server"`` or ``name`` -> why)."""

    deployed: list[tuple[str, Deployed]] = field(default_factory=list)  # (server, outcome)
    failed: dict[str, str] = field(default_factory=dict)


def deploy_fleet(fleet: Fleet, store: CertStore, specs: Iterable[CertSpec], servers: Sequence[str] | None = None,
                 done: Callable[[str, Deployed], None] | None = None, parallel: int = 8) -> FleetDeployment:
    """Each issued certificate to the servers of its instances (``servers``: only those), over
    each server's transport, into the fleet's ``cozy_acme.deploy_dir``, a server at a time (its
    certificates share one ``cozy_acme.nginx_reload``), up to ``parallel`` servers at once.
    ``done(server, outcome)`` hears of each certificate deployed as it happens. A server that fails
    fails its certificates, not the others'."""
    from cozyops.stack.connect import connect

    if fleet.acme is None:
        raise CozyopsError(f"fleet {fleet.name}", "has no cozy_acme settings: nothing to deploy")
    acme = fleet.acme
    unknown = sorted(set(servers or ()) - set(fleet.servers))
    if unknown:
        raise CozyopsError(f"server {unknown[0]}", f"is not a server of fleet {fleet.name}")
    records = store.records()
    result = FleetDeployment()
    work: dict[str, list[Item]] = {}
    for spec in specs:
        if spec.name not in records:
            result.failed[spec.name] = "not issued yet (`cozyops cert issue`)"
            continue
        item = Item(spec.name, store.fullchain(spec.name).read_bytes(), store.privkey(spec.name).read_bytes(),
                    spec.domains[0])
        for server in servers_of(fleet, spec):
            if not servers or server in servers:
                work.setdefault(server, []).append(item)

    def to_server(server: str) -> list[tuple[Item, Deployed | CozyopsError]]:
        items = work[server]
        try:
            with connect(fleet, fleet.servers[server]) as stack:
                outcomes: list[Deployed | CozyopsError] = list(deploy_many(stack.transport, items, acme.deploy_dir,
                                                                           acme.nginx_reload))
        except CozyopsError as error:
            outcomes = [error] * len(items)
        return list(zip(items, outcomes, strict=True))

    with ThreadPoolExecutor(max_workers=min(parallel, len(work) or 1)) as pool:
        for server, pairs in zip(sorted(work), pool.map(to_server, sorted(work)), strict=True):
            for item, outcome in pairs:
                if isinstance(outcome, CozyopsError):
                    result.failed[f"{item.name} on {server}"] = str(outcome)
                    continue
                result.deployed.append((server, outcome))
                if done:
                    done(server, outcome)
    return result
