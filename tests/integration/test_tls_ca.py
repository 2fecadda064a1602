"""Certificates against CAs of the tests' own: pebble rejecting nonces and restarted (its accounts
forgotten), and the lab's pebble behind a small RFC 9773 responder (renewal information)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

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

    It serves pebble's directory with a ``renewalInfo`` URL added, and answers that URL with the
    window the test sets; everything else goes to pebble itself (the directory's other URLs).
    """

    def __init__(self, lab) -> None:
        pebble = lab.pebble()
        directory = inside(lab, lambda: requests.get(lab.spec.acme_directory, verify=str(pebble.ca_bundle),
                                                     timeout=5).json())
        self.window = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30),
                       datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=31))
        self.asked: list[str] = []
        responder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _json(self, data: dict, headers: dict | None = None) -> None:
                body = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/dir":
                    self._json({**directory, "renewalInfo": f"{responder.base}/renewal-info"})
                elif self.path.startswith("/renewal-info/"):
                    responder.asked.append(self.path.rsplit("/", 1)[1])
                    start, end = responder.window
                    self._json({"suggestedWindow": {"start": start.isoformat().replace("+00:00", "Z"),
                                                    "end": end.isoformat().replace("+00:00", "Z")}},
                               {"Retry-After": "0"})
                else:
                    self.send_error(404)

        self.server = inside(lab, lambda: ThreadingHTTPServer(("127.0.0.1", 0), Handler))
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def test_renewal_by_the_cas_ari_window(lab, tmp_path):
    responder = AriResponder(lab)
    try:
        t = tag()
        domain = f"ari{t}.{lab.spec.zone}"
        fleet = inventory.load(write_fleet(tmp_path / "fleet", lab, [domain]))
        # the responder's URL is plain http on the namespace's loopback: set it past the inventory's https check
        fleet = dataclasses.replace(fleet, acme=dataclasses.replace(fleet.acme, directory=f"{responder.base}/dir"))
        manager = CertManager(fleet)
        first = inside(lab, lambda: manager.execute(manager.plan().todo))
        assert list(first.issued) == [domain]
        verify_chain(lab, manager.store.fullchain(domain), (domain, f"*.{domain}"), f"drive.{domain}")

        # the CA's window is a month away (pebble's certificates last years): nothing due
        assert inside(lab, lambda: manager.plan(renew_only=True)).todo == []
        assert len(responder.asked) == 1
        record = manager.store.records()[domain]
        assert record.ari is not None and record.ari.start == responder.window[0].replace(microsecond=0)

        # the CA moves the window to now (say, a revocation ahead): due, renewed
        now = datetime.datetime.now(datetime.UTC)
        responder.window = (now - datetime.timedelta(hours=1), now + datetime.timedelta(hours=1))
        plan = inside(lab, lambda: manager.plan(renew_only=True))
        assert [(spec.name, renewal) for spec, renewal in plan.todo] == [(domain, True)]
        renewed = inside(lab, lambda: manager.execute(plan.todo))
        assert list(renewed.issued) == [domain]
        assert renewed.issued[domain].serial != first.issued[domain].serial
        manager.close()
    finally:
        responder.close()
