"""Deploy a certificate to nginx over a transport: copy, test, reload, verify by a TLS handshake.

On the server, ``<dir>/<name>/fullchain.pem`` and ``privkey.pem`` (0600). The files in place are
kept aside first; the new ones are written atomically; ``nginx -t`` must accept them, else the old
ones are put back (or the new ones removed when there were none) and nginx is not reloaded. After
the reload, a TLS handshake with SNI (through the transport's port forwarding, or to a given
address) must show the new certificate: nginx's workers take the new one within moments, so the
handshake is retried for a few seconds.
"""

from __future__ import annotations

import contextlib
import shlex
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cozyops.errors import CozyopsError
from cozyops.tls.store import split_chain
from cozyops.transport.base import Transport

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
                 leaf: x509.Certificate) -> tuple[bool, x509.Certificate | None]:
    """Handshakes until ``leaf`` is served (nginx's workers take a reload within moments)."""
    end = time.monotonic() + VERIFY_SECONDS
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


def deploy(transport: Transport, name: str, fullchain_pem: bytes, key_pem: bytes, server_name: str,
           remote_dir: str = REMOTE_DIR, reload: str = "service nginx reload",
           check: Callable[[str], x509.Certificate] | None = None, port: int = 443) -> Deployed:
    """Install the certificate ``name`` on the server and reload nginx; verify what it serves.

    ``check(server_name)`` returns the certificate served for that name; by default a handshake
    through the transport's forwarding of ``port``.
    """
    host = transport.name
    folder = f"{remote_dir.rstrip('/')}/{name}"
    chain, key = f"{folder}/fullchain.pem", f"{folder}/privkey.pem"
    leaf = x509.load_pem_x509_certificate(split_chain(fullchain_pem.decode())[0].encode())
    q = shlex.quote
    transport.run(f"mkdir -p {q(folder)} && chmod 755 {q(folder)} && "
                  f"for f in {q(chain)} {q(key)}; do if [ -e \"$f\" ]; then cp -p \"$f\" \"$f.old\"; "
                  f"else rm -f \"$f.old\"; fi; done").check(host)
    transport.put(key_pem, key, 0o600)
    transport.put(fullchain_pem, chain, 0o644)
    test = transport.run("nginx -t")
    if test.returncode != 0:
        transport.run(f"for f in {q(chain)} {q(key)}; do if [ -e \"$f.old\" ]; then mv -f \"$f.old\" \"$f\"; "
                      f"else rm -f \"$f\"; fi; done").check(host)
        lines = [line for line in test.stderr.decode(errors="replace").splitlines() if "emerg" in line or
                 "failed" in line] or test.stderr.decode(errors="replace").strip().splitlines()[-1:]
        raise DeployError(f"certificate {name} on {host}",
                          f"nginx -t refuses it, the previous files are kept: {lines[0] if lines else 'exit status'}")
    transport.run(reload).check(host)
    transport.run(f"rm -f {q(chain)}.old {q(key)}.old").check(host)
    with contextlib.ExitStack() as stack:
        if check is None:  # one forwarding for every attempt
            forward = stack.enter_context(transport.forward(port))

            def check(sni: str) -> x509.Certificate:
                return served_certificate(forward.local_host, forward.local_port, sni)

        verified, served = _wait_served(check, server_name, leaf)
    if not verified:
        what = f"serial {served.serial_number:x}" if served is not None else "no certificate (no TLS answer)"
        raise DeployError(f"certificate {name} on {host}",
                          f"after the reload, {server_name} is served {what}, "
                          f"not the new serial {leaf.serial_number:x}")
    return Deployed(host, name, chain, key, f"{leaf.serial_number:x}", verified)
