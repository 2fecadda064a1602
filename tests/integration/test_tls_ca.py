"""Certificates against CAs of the tests' own: pebble rejecting nonces and restarted (its accounts
forgotten), and the lab's pebble behind a small RFC 9773 responder (renewal information)."""

from __future__ import annotations

import base64
import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from cryptography import x509

from cozyops import inventory
from cozyops.lab import pki
from cozyops.tls.issuer import AcmeError
from cozyops.tls.manager import CertManager
from tests.integration.test_tls import inside, tag, verify_chain, write_fleet

pytestmark = pytest.mark.lab


def free_port(lab) -> int:
    def pick():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    return inside(lab, pick)


class OwnPebble:
    """A pebble of the test's own, on 127.0.0.1 in the lab's namespace, validating against its BIND."""

    def __init__(self, lab, root: Path, nonce_reject: int, eab_keys: dict | None = None) -> None:
        self.lab, self.root, self.nonce_reject = lab, root, nonce_reject
        pki.make_server_certificate(root / "tls", "test pebble API CA", ["localhost"], ["127.0.0.1"])
        self.port, self.management = free_port(lab), free_port(lab)
        config = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}", "managementListenAddress": f"127.0.0.1:{self.management}",
            "certificate": str(root / "tls/cert.pem"), "privateKey": str(root / "tls/key.pem"),
            "httpPort": 5002, "tlsPort": 5001, "ocspResponderURL": "",
            "externalAccountBindingRequired": bool(eab_keys), "externalAccountMACKeys": eab_keys or {}}}
        (root / "config.json").write_text(json.dumps(config))
        self.process: subprocess.Popen | None = None

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    @property
    def ca_bundle(self) -> Path:
        return self.root / "tls/ca.pem"

    def start(self) -> None:
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_VA_ALWAYS_VALID": "0", "PEBBLE_AUTHZREUSE": "0",
               "PEBBLE_WFE_NONCEREJECT": str(self.nonce_reject)}
        log = open(self.root / "pebble.log", "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.lab.spec.netns, "pebble", "-config", str(self.root / "config.json"),
             "-dnsserver", f"{self.lab.spec.bind_address}:53"], env=env, stdout=log, stderr=log,
            stdin=subprocess.DEVNULL)
        log.close()

        def ready():
            end = time.monotonic() + 20
            while time.monotonic() < end:
                try:
                    requests.get(self.directory, verify=str(self.ca_bundle), timeout=1).raise_for_status()
                    return
                except requests.RequestException:
                    time.sleep(0.1)
            raise AssertionError("pebble did not come up: " + (self.root / "pebble.log").read_text()[-2000:])

        inside(self.lab, ready)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture
def own_pebble(lab, tmp_path):
    pebble = OwnPebble(lab, tmp_path / "pebble", nonce_reject=50)
    try:
        yield pebble
    finally:
        pebble.stop()


def test_nonce_rejection_and_a_restarted_ca_still_yield_every_certificate(lab, tmp_path, own_pebble):
    own_pebble.start()
    t = tag()
    domains = [f"r{i}{t}.{lab.spec.zone}" for i in range(6)]
    root = write_fleet(tmp_path / "fleet", lab, domains, acme={"directory": own_pebble.directory,
                                                              "ca_bundle": str(own_pebble.ca_bundle)})
    manager = CertManager(inventory.load(root))
    plan = inside(lab, manager.plan)
    result = inside(lab, lambda: manager.execute(plan.todo))
    assert not result.failed, result.failed
    assert sorted(result.issued) == sorted(domains)
    account = json.loads(next((root / ".cozyops/acme").glob("*/account.json")).read_text())
    key = next((root / ".cozyops/acme").glob("*/account.key"))
    assert key.stat().st_mode & 0o777 == 0o600
    key_bytes = key.read_bytes()
    assert "PRIVATE KEY" not in json.dumps(account)
    manager.close()

    # pebble restarted: it knows no account any more; the same key is registered again
    own_pebble.stop()
    own_pebble.start()
    manager = CertManager(inventory.load(root))
    plan = inside(lab, lambda: manager.plan(force=True))
    assert len(plan.todo) == len(domains)
    result = inside(lab, lambda: manager.execute(plan.todo))
    assert not result.failed, result.failed
    assert sorted(result.issued) == sorted(domains)
    assert key.read_bytes() == key_bytes
    manager.close()


def test_external_account_binding_when_the_ca_requires_it(lab, tmp_path):
    import base64
    import secrets as secrets_module

    hmac_key = base64.urlsafe_b64encode(secrets_module.token_bytes(32)).decode().rstrip("=")
    pebble = OwnPebble(lab, tmp_path / "pebble", nonce_reject=0, eab_keys={"kid-1": hmac_key})
    try:
        pebble.start()
        t = tag()
        domain = f"eab{t}.{lab.spec.zone}"
        acme = {"directory": pebble.directory, "ca_bundle": str(pebble.ca_bundle)}
        root = write_fleet(tmp_path / "fleet", lab, [domain], acme=acme)
        manager = CertManager(inventory.load(root))
        with pytest.raises(AcmeError) as refused:
            inside(lab, lambda: manager.execute(manager.plan().todo))
        assert "requires external account binding" in str(refused.value)
        manager.close()

        (root / "secrets/eab.key").write_text(hmac_key + "\n")
        (root / "secrets/eab.key").chmod(0o600)
        write_fleet(root, lab, [domain], acme={**acme, "eab_kid": "kid-1", "eab_hmac_key_file": "secrets/eab.key"})
        manager = CertManager(inventory.load(root))
        result = inside(lab, lambda: manager.execute(manager.plan().todo))
        assert list(result.issued) == [domain], result.failed
        manager.close()
    finally:
        pebble.stop()


class AriResponder:
    """TEST DOUBLE: a small RFC 9773 renewal-information responder in front of the lab's pebble.

    An HTTPS reverse proxy on 127.0.0.1 in the lab's namespace: every request goes on to pebble
    with the proxy's Host header, so pebble builds its URLs (and checks each JWS ``url``) on the
    proxy's address and the client only ever talks to the proxy. The proxy adds ``renewalInfo`` to
    the directory (unless ``ari`` is off) and answers it with the window the test sets, and keeps
    the payload of every newOrder request it passes on (to check RFC 9773 §5's ``replaces``).
    """

    def __init__(self, lab, root: Path, ari: bool = True) -> None:
        pebble = lab.pebble()
        upstream = lab.spec.acme_directory.rsplit("/", 1)[0]
        pki.make_server_certificate(root, "test ARI responder CA", ["localhost"], ["127.0.0.1"])
        self.ca_bundle = root / "ca.pem"
        self.window = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30),
                       datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=31))
        self.asked: list[str] = []
        self.new_orders: list[dict] = []
        # the problem type (None: none) of a 409 answering the next order that names a replaced certificate
        self.conflict: str | None = None
        responder = self
        session = requests.Session()
        session.trust_env = False

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, headers: dict, body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "POST" and self.path.startswith(responder.new_order_path):
                    payload = json.loads(body)["payload"]
                    padded = payload + "=" * (-len(payload) % 4)
                    order = json.loads(base64.urlsafe_b64decode(padded))
                    responder.new_orders.append(order)
                    if "replaces" in order and responder.conflict:
                        # RFC 9773 §5: that certificate was replaced already (or another conflict)
                        problem = {"type": f"urn:ietf:params:acme:error:{responder.conflict}",
                                   "detail": f"409 {responder.conflict}"}
                        responder.conflict = None
                        self._send(409, {"Content-Type": "application/problem+json"}, json.dumps(problem).encode())
                        return
                headers = {key: value for key, value in self.headers.items()
                           if key.lower() in ("host", "content-type", "user-agent")}
                answer = session.request(self.command, upstream + self.path, data=body or None, headers=headers,
                                         verify=str(pebble.ca_bundle), timeout=10)
                content = answer.content
                if self.path == "/dir" and responder.ari:
                    content = json.dumps({**answer.json(), "renewalInfo": f"{responder.base}/renewal-info"}).encode()
                self._send(answer.status_code, {key: value for key, value in answer.headers.items() if key.lower() in (
                    "content-type", "location", "link", "replay-nonce", "retry-after", "cache-control")}, content)

            def do_GET(self) -> None:  # noqa: N802
                if self.path.startswith("/renewal-info/") and responder.ari:
                    responder.asked.append(self.path.rsplit("/", 1)[1])
                    start, end = responder.window
                    body = json.dumps({"suggestedWindow": {"start": start.isoformat().replace("+00:00", "Z"),
                                                           "end": end.isoformat().replace("+00:00", "Z")}}).encode()
                    self._send(200, {"Content-Type": "application/json", "Retry-After": "0"}, body)
                else:
                    self._forward()

            do_HEAD = do_POST = _forward  # noqa: N815

        self.ari = ari
        self.server = inside(lab, lambda: ThreadingHTTPServer(("127.0.0.1", 0), Handler))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(root / "cert.pem", root / "key.pem")
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.base = f"https://127.0.0.1:{self.server.server_address[1]}"
        directory = inside(lab, lambda: session.get(lab.spec.acme_directory, verify=str(pebble.ca_bundle),
                                                    timeout=5).json())
        self.new_order_path = "/" + directory["newOrder"].split("/", 3)[3]
        # the server's threads (and their connections to pebble) in the lab's namespace
        self.thread = threading.Thread(target=lambda: inside(lab, self.server.serve_forever), daemon=True)
        self.thread.start()

    @property
    def directory(self) -> str:
        return f"{self.base}/dir"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def ari_identifier(fullchain: Path) -> str:
    """RFC 9773 §4.1, written out: base64url(AKI keyIdentifier) "." base64url(serial as DER INTEGER content)."""
    leaf = x509.load_pem_x509_certificate(fullchain.read_bytes())
    key_id = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    serial = leaf.serial_number
    serial_bytes = serial.to_bytes(serial.bit_length() // 8 + 1, "big")  # room for the sign bit, as DER has
    return ".".join(base64.urlsafe_b64encode(part).decode().rstrip("=") for part in (key_id, serial_bytes))


def test_renewal_by_the_cas_ari_window_replaces_the_old_certificate(lab, tmp_path):
    responder = AriResponder(lab, tmp_path / "responder")
    try:
        t = tag()
        domain = f"ari{t}.{lab.spec.zone}"
        root = write_fleet(tmp_path / "fleet", lab, [domain], acme={"directory": responder.directory,
                                                                    "ca_bundle": str(responder.ca_bundle)})
        manager = CertManager(inventory.load(root))
        first = inside(lab, lambda: manager.execute(manager.plan().todo))
        assert list(first.issued) == [domain]
        verify_chain(lab, manager.store.fullchain(domain), (domain, f"*.{domain}"), f"drive.{domain}")
        assert len(responder.new_orders) == 1 and "replaces" not in responder.new_orders[0]  # nothing to replace
        first_id = ari_identifier(manager.store.fullchain(domain))

        # the CA's window is a month away (pebble's certificates last years): nothing due
        assert inside(lab, lambda: manager.plan(renew_only=True)).todo == []
        assert responder.asked == [first_id]
        record = manager.store.records()[domain]
        assert record.ari is not None and record.ari.start == responder.window[0].replace(microsecond=0)

        # the CA moves the window to now (say, a revocation ahead): due, renewed, the order naming
        # the certificate it replaces
        now = datetime.datetime.now(datetime.UTC)
        responder.window = (now - datetime.timedelta(hours=1), now + datetime.timedelta(hours=1))
        plan = inside(lab, lambda: manager.plan(renew_only=True))
        assert [(spec.name, renewal) for spec, renewal in plan.todo] == [(domain, True)]
        renewed = inside(lab, lambda: manager.execute(plan.todo))
        assert list(renewed.issued) == [domain], renewed.failed
        assert renewed.issued[domain].serial != first.issued[domain].serial
        assert len(responder.new_orders) == 2
        assert responder.new_orders[1]["replaces"] == first_id
        assert sorted(i["value"] for i in responder.new_orders[1]["identifiers"]) == sorted([domain, f"*.{domain}"])

        # the CA says the certificate was replaced already (409 alreadyReplaced): the order again, without
        second_id = ari_identifier(manager.store.fullchain(domain))
        responder.conflict = "alreadyReplaced"
        again = inside(lab, lambda: manager.execute(plan.todo))
        assert list(again.issued) == [domain], again.failed
        assert responder.new_orders[2]["replaces"] == second_id and "replaces" not in responder.new_orders[3]
        assert len(responder.new_orders) == 4

        # any other 409 is an error of its own, not a reason to order again without `replaces`
        responder.conflict = "orderConflict"
        failed = inside(lab, lambda: manager.execute(plan.todo))
        assert not failed.issued and domain in failed.failed
        assert "409 orderConflict" in str(failed.failed[domain])
        assert len(responder.new_orders) == 5 and "replaces" in responder.new_orders[4]
        manager.close()
    finally:
        responder.close()


def test_renewal_without_renewal_info_names_no_replaced_certificate(lab, tmp_path):
    responder = AriResponder(lab, tmp_path / "responder", ari=False)  # pebble's own directory, passed through
    try:
        domain = f"noari{tag()}.{lab.spec.zone}"
        root = write_fleet(tmp_path / "fleet", lab, [domain], acme={"directory": responder.directory,
                                                                    "ca_bundle": str(responder.ca_bundle)})
        manager = CertManager(inventory.load(root))
        assert list(inside(lab, lambda: manager.execute(manager.plan().todo)).issued) == [domain]
        manager.store.expire_now(domain)  # due by the fallback rule
        plan = inside(lab, lambda: manager.plan(renew_only=True))
        assert [(spec.name, renewal) for spec, renewal in plan.todo] == [(domain, True)]
        assert list(inside(lab, lambda: manager.execute(plan.todo)).issued) == [domain]
        assert len(responder.new_orders) == 2
        assert all("replaces" not in order for order in responder.new_orders)
        manager.close()
    finally:
        responder.close()
