"""The ACME issuer, on certbot's ``acme`` library: account, orders, adaptive polling, ARI.

- **Account**: one per directory, an ES256 key in ``<state>/acme/<directory id>/account.key``
  (0600). At every start the key is presented to ``newAccount``: the CA answers with the existing
  account, or registers it again when it no longer knows it (a restarted pebble). EAB when the
  fleet gives a key id and HMAC key.
- **Orders**: a fresh key per certificate (ECDSA P-256, or RSA 2048 on request), never reused.
- **Polling**: the library's ``poll_and_finalize`` sleeps a fixed second per step; here polls
  start short (50 ms on a private CA, 500 ms on a public one), back off by 1.5x to 2 s, and wait
  at least what a ``Retry-After`` header asks.
- **Threads**: the account, the directory and the CA's nonces are shared; each thread has its own
  kept-alive connection (``cozyops.tls.acmenet``, the library's ``ClientNetwork`` on a lighter
  request path). newOrder requests go one at a time.
- **ARI**: the CA's renewal window for a certificate (RFC 9773 §4); a renewal's order names the
  certificate it replaces (§5, ``replaces``) when the directory offers renewalInfo.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import josepy as jose
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cozyops import files
from cozyops.errors import CozyopsError
from cozyops.model import ACME_DIRECTORIES
from cozyops.tls.acmenet import LeanNetwork, Nonces, tls_context
from cozyops.tls.policy import Window

USER_AGENT = "cozyops"
# A CA may reject any nonce (pebble: a set share of them): 25 in a row is 1 in 33 million at 50 %.
BAD_NONCE_RETRIES = 25
POLL_CAP = 2.0


class AcmeError(CozyopsError):
    """The CA refused or failed (names the directory or the certificate; never a key)."""


def directory_url(name: str) -> str:
    return ACME_DIRECTORIES.get(name, name)


def is_public(url: str) -> bool:
    return url in ACME_DIRECTORIES.values()


def directory_id(url: str) -> str:
    """A directory's own folder name: its host and a digest of its URL."""
    host = urlsplit(url).hostname or "directory"
    return f"{host}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"


def new_key(key_type: str = "ecdsa"):
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Network(LeanNetwork):
    """The lean ``ClientNetwork`` (cozyops.tls.acmenet), retrying a rejected nonce more than once
    (CAs may reject any nonce)."""

    def post(self, *args, **kwargs):
        for attempt in range(BAD_NONCE_RETRIES):
            try:
                return self._post_once(*args, **kwargs)
            except messages.Error as error:
                if error.code != "badNonce" or attempt == BAD_NONCE_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _check_response(cls, response, content_type=None):
        # The library raises every 409 as a bare ConflictError, dropping its problem document: a
        # typed 409 (RFC 9773's alreadyReplaced among others) is raised as the problem it is.
        if response.status_code == 409:
            try:
                problem = messages.Error.from_json(response.json())
            except (ValueError, jose.DeserializationError):
                problem = None
            if problem is not None:
                raise problem
        return super()._check_response(response, content_type=content_type)


@dataclass
class Poller:
    """Adaptive delays: start short, back off, honour ``Retry-After``."""

    start: float = 0.05
    factor: float = 1.5
    cap: float = POLL_CAP
    sleep: object = time.sleep
    slept: float = 0.0

    def delays(self):
        delay = self.start
        while True:
            yield delay
            delay = min(delay * self.factor, self.cap)

    @staticmethod
    def retry_after(response: requests.Response | None) -> float:
        if response is None:
            return 0.0
        when = client.ClientV2.retry_after(response, 0)
        return max(0.0, (when - datetime.datetime.now()).total_seconds())

    def wait(self, delay: float, response: requests.Response | None, deadline: float) -> None:
        seconds = max(delay, self.retry_after(response))
        seconds = min(seconds, max(0.0, deadline - time.monotonic()))
        self.slept += seconds
        self.sleep(seconds)


@dataclass
class Challenge:
    """One challenge of an order: the identifier, the value (DNS-01: the TXT value; HTTP-01: the
    key authorization, served at ``/.well-known/acme-challenge/<token>``), the challenge body."""

    domain: str  # as ordered: alice.example.org or *.alice.example.org
    value: str
    body: messages.ChallengeBody
    authz: messages.AuthorizationResource
    token: str | None = None  # HTTP-01: the file's name


@dataclass
class Placed:
    """An order the CA has taken: its body and URL."""

    domains: tuple[str, ...]
    body: messages.Order
    uri: str | None


@dataclass
class Order:
    domains: tuple[str, ...]
    key_pem: bytes
    resource: messages.OrderResource
    challenges: list[Challenge] = field(default_factory=list)


@dataclass
class Certificate:
    domains: tuple[str, ...]
    key_pem: bytes
    fullchain_pem: str

    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.fullchain_pem.encode())


def _problem(error: messages.Error | None) -> str:
    if error is None:
        return "invalid, no reason given"
    code = error.code or (error.typ or "").rsplit(":", 1)[-1]
    detail = error.detail or error.title or ""
    return f"{code}: {detail}".strip(": ")


class ValidationFailed(AcmeError):
    """Some identifiers failed validation: ``failures`` maps each to the CA's reason."""

    def __init__(self, subject: str, failures: dict[str, str]) -> None:
        self.failures = failures
        reason = "validation failed for " + "; ".join(f"{name} ({why})" for name, why in failures.items())
        super().__init__(subject, reason)


class NewOrder(messages.NewOrder):
    """newOrder with RFC 9773's ``replaces``: the ARI certificate identifier of the certificate renewed."""

    replaces: str | None = jose.field("replaces", omitempty=True)


def ari_cert_id(cert_pem: bytes) -> str:
    """RFC 9773 §4.1: base64url(keyIdentifier of the Authority Key Identifier) "." base64url(serial DER)."""
    return client._renewal_info_path_component(x509.load_pem_x509_certificate(cert_pem))


class Issuer:
    def __init__(self, directory: str, account_dir: Path, ca_bundle: Path | None = None, email: str | None = None,
                 eab: tuple[str, Path] | None = None, timeout: float = 30.0, poller: Poller | None = None) -> None:
        self.url = directory_url(directory)
        self.account_dir = account_dir
        self.verify: bool | str = str(ca_bundle) if ca_bundle else True
        self.email = email
        self.eab = eab
        self.timeout = timeout
        self.poller = poller or Poller(start=0.5 if is_public(self.url) else 0.05)
        self._local = threading.local()
        self._new_order_lock = threading.Lock()
        self._nonces = Nonces()  # shared by the threads' networks
        self._tls: object = None
        self._thumbprint: str | None = None
        self.directory: messages.Directory | None = None
        self.account: messages.RegistrationResource | None = None
        self.key: jose.JWKEC | None = None

    # -- account -------------------------------------------------------------------------------

    def _error(self, reason: str, hint: str | None = None) -> AcmeError:
        return AcmeError(f"ACME directory {self.url}", reason, hint)

    def _account_key(self) -> jose.JWKEC:
        path = self.account_dir / "account.key"
        if path.exists():
            if path.stat().st_mode & 0o077:
                raise self._error(f"account key {path} is readable by others", f"chmod 600 {path}")
            try:
                key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            except (ValueError, TypeError, UnsupportedAlgorithm):
                key = None  # (the library's message may quote the file: never shown)
            if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
                raise self._error(f"account key {path} is not an unencrypted PEM P-256 private key",
                                  "restore it from a backup, or move it aside and a new account is registered")
            return jose.JWKEC(key=key)
        files.private_dir(self.account_dir)
        key = ec.generate_private_key(ec.SECP256R1())
        files.write_private(path, key_pem(key))
        return jose.JWKEC(key=key)

    def _network(self) -> Network:
        if self._tls is None:
            self._tls = tls_context(self.verify)
        return Network(self.key, account=self.account, alg=jose.ES256, verify_ssl=self.verify,  # type: ignore[arg-type]
                       user_agent=USER_AGENT, timeout=int(self.timeout), nonces=self._nonces, context=self._tls)

    def explain(self, error: BaseException, subject: str | None = None) -> AcmeError:
        where = subject or f"ACME directory {self.url}"
        if isinstance(error, AcmeError):
            return error
        if isinstance(error, requests.exceptions.SSLError):
            return AcmeError(where, "TLS verification of the CA failed",
                             "set cozy_acme.ca_bundle to the CA bundle of a private directory")
        if isinstance(error, requests.exceptions.ConnectionError):
            return AcmeError(where, "cannot connect to the CA")
        if isinstance(error, requests.exceptions.Timeout):
            return AcmeError(where, f"no answer from the CA within {self.timeout:g} s")
        if isinstance(error, messages.Error):
            return AcmeError(where, _problem(error))
        if isinstance(error, errors.ValidationError):
            failures = {}
            for authzr in error.failed_authzrs:
                for chall in authzr.body.challenges:
                    if chall.error is not None:
                        failures[_ident(authzr)] = _problem(chall.error)
            return ValidationFailed(where, failures)
        if isinstance(error, errors.Error | ValueError | json.JSONDecodeError):
            return AcmeError(where, f"{type(error).__name__}: {error}")
        raise error

    def _get_directory(self, net: Network) -> messages.Directory:
        """The ACME directory at ``self.url``; one line naming the URL when it is none."""
        hint = "cozy_acme.directory: letsencrypt, letsencrypt-staging, or the URL of a directory (its JSON)"
        try:
            return client.ClientV2.get_directory(self.url, net)
        except errors.ClientError as error:
            response = error.args[0][0] if isinstance(error.args[0], tuple) else error.args[0]
            if isinstance(response, requests.Response):
                raise self._error(f"HTTP {response.status_code} {response.reason or ''}".rstrip()
                                  + ": no ACME directory at this URL", hint) from None
            raise
        except (jose.DeserializationError, json.JSONDecodeError):
            raise self._error("the answer is not an ACME directory", hint) from None

    def connect(self) -> Issuer:
        """Fetch the directory and make sure the CA knows the account (registering it if not)."""
        if self.account is not None:
            return self
        try:
            self.key = self._account_key()
            net = self._network()
            self.directory = self._get_directory(net)
            acme = client.ClientV2(self.directory, net)
            eab = None
            if self.eab:
                kid, hmac_file = self.eab
                eab = messages.ExternalAccountBinding.from_data(
                    self.key.public_key(), kid, hmac_file.read_text().strip(), self.directory)
            elif acme.external_account_required():
                raise self._error("the CA requires external account binding",
                                  "set cozy_acme.eab_kid and cozy_acme.eab_hmac_key_file")
            registration = messages.NewRegistration.from_data(
                email=self.email, terms_of_service_agreed=True, external_account_binding=eab)
            try:
                self.account = acme.new_account(registration)
            except errors.ConflictError as conflict:  # the CA knows the key: that account
                self.account = messages.RegistrationResource(uri=conflict.location, body=messages.Registration())
        except Exception as error:  # noqa: BLE001
            raise self.explain(error) from None
        files.write_private(self.account_dir / "account.json",
                            json.dumps({"directory": self.url, "uri": self.account.uri}) + "\n")
        self._local.acme = None
        return self

    def acme(self) -> client.ClientV2:
        """This thread's client (its own HTTP session and nonces), on the shared account."""
        self.connect()
        acme = getattr(self._local, "acme", None)
        if acme is None:
            acme = client.ClientV2(self.directory, self._network())
            self._local.acme = acme
        return acme

    def _key_authorization(self, chall: challenges.KeyAuthorizationChallenge) -> str:
        """``token.thumbprint`` (RFC 8555 §8.1), with the account key's thumbprint computed once."""
        if self._thumbprint is None:
            self._thumbprint = jose.b64encode(self.key.thumbprint(hash_function=hashes.SHA256)).decode()
        return chall.encode("token") + "." + self._thumbprint

    def _dns01_value(self, chall: challenges.DNS01) -> str:
        """``chall.validation(key)``, with the account key's thumbprint computed once."""
        authorization = self._key_authorization(chall)
        return jose.b64encode(hashlib.sha256(authorization.encode()).digest()).decode()

    @property
    def renewal_info_url(self) -> str | None:
        self.connect()
        try:
            return self.directory["renewalInfo"]
        except KeyError:
            return None

    # -- orders --------------------------------------------------------------------------------

    def order(self, domains: tuple[str, ...], key_type: str = "ecdsa", replaces: str | None = None,
              challenge: str = "dns-01") -> Order:
        """A new order for ``domains`` with a fresh key; its challenges (``dns-01`` or ``http-01``) to publish."""
        return self.prepare(self.new_order(domains, replaces), key_type, challenge)

    def new_order(self, domains: tuple[str, ...], replaces: str | None = None) -> Placed:
        """Place the order (newOrder, one request at a time per directory).

        ``replaces``: the ARI identifier of the certificate this one renews (RFC 9773 §5), sent
        only when the directory offers renewalInfo; a CA that answers ``alreadyReplaced`` (that
        certificate was replaced already, by an order of ours that went nowhere) gets the order
        again without it.
        """
        try:
            acme = self.acme()
            identifiers = [messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name) for name in domains]
            if replaces is not None and self.renewal_info_url is None:
                replaces = None
            # One newOrder at a time per directory (the rest of the flow runs concurrently): pebble
            # deadlocks on concurrent newOrder requests (a recursive read lock of its store while
            # another newOrder waits to write), and public CAs limit new orders per account anyway.
            with self._new_order_lock:
                try:
                    response = acme._post(self.directory["newOrder"],
                                          NewOrder(identifiers=identifiers, replaces=replaces))
                except messages.Error as error:
                    # RFC 9773 §5: 409 Conflict, problem alreadyReplaced (only that type)
                    if replaces is None or not _already_replaced(error):
                        raise
                    response = acme._post(self.directory["newOrder"], NewOrder(identifiers=identifiers))
            return Placed(domains, messages.Order.from_json(response.json()), response.headers.get("Location"))
        except Exception as error:  # noqa: BLE001
            raise self.explain(error, f"certificate {domains[0]}") from None

    def prepare(self, placed: Placed, key_type: str = "ecdsa", challenge: str = "dns-01") -> Order:
        """A placed order's fresh key and CSR, its authorizations and the challenges (``dns-01`` or
        ``http-01``) to publish."""
        domains = placed.domains
        subject = f"certificate {domains[0]}"
        key = key_pem(new_key(key_type))
        try:
            acme = self.acme()
            csr = crypto_util.make_csr(key, list(domains))
            authorizations = [acme._authzr_from_response(acme._post_as_get(url), uri=url)
                              for url in placed.body.authorizations]
            resource = messages.OrderResource(body=placed.body, uri=placed.uri,
                                              authorizations=authorizations, csr_pem=csr)
        except Exception as error:  # noqa: BLE001
            raise self.explain(error, subject) from None
        order = Order(domains, key, resource)
        for authz in resource.authorizations:
            ident = _ident(authz)
            if authz.body.status == messages.STATUS_VALID:
                continue
            for body in authz.body.challenges:
                if challenge == "dns-01" and isinstance(body.chall, challenges.DNS01):
                    order.challenges.append(Challenge(ident, self._dns01_value(body.chall), body, authz))
                    break
                if challenge == "http-01" and isinstance(body.chall, challenges.HTTP01):
                    order.challenges.append(Challenge(ident, self._key_authorization(body.chall), body, authz,
                                                      body.chall.encode("token")))
                    break
            else:
                raise AcmeError(subject, f"the CA offers no {challenge} challenge for {ident}")
        return order

    def answer(self, order: Order) -> None:
        """Tell the CA each challenge is ready: a POST of ``{}`` to it (RFC 8555 §7.5.1); the
        answer is not read (the order is polled next)."""
        acme = self.acme()
        for challenge in order.challenges:
            try:
                response = challenges.HTTP01Response() if challenge.token is not None else challenges.DNS01Response()
                acme._post(challenge.body.uri, response)
            except Exception as error:  # noqa: BLE001
                raise self.explain(error, f"certificate {order.domains[0]}") from None

    def complete(self, order: Order, deadline: float, before_finalize=None) -> Certificate:
        """Poll the order until the CA has validated it, finalize, poll, download the chain.

        The order itself is polled (one request a poll, whatever the number of names); only when
        it turns invalid are its authorizations fetched, for the reason of each failed name.
        """
        subject = f"certificate {order.domains[0]}"
        try:
            status, data = self._poll_order(order, deadline, subject, waiting_for=("pending",))
            if status == messages.STATUS_INVALID.name:
                raise self._validation_failure(order, subject, data)
            if status == messages.STATUS_READY.name:
                if before_finalize is not None:
                    before_finalize()  # (the CA may issue from here on: the caller records that first)
                response = self._finalize(order)
                status, data = response.json()["status"], response.json()
                if status != messages.STATUS_VALID.name or "certificate" not in data:
                    status, data = self._poll_order(order, deadline, subject, ("ready", "processing"), response)
            if status != messages.STATUS_VALID.name or "certificate" not in data:
                raise AcmeError(subject, f"the CA left the order {status}: " + _problem(
                    messages.Error.from_json(data["error"]) if data.get("error") else None))
            chain = self.acme()._post_as_get(data["certificate"]).text
            return Certificate(order.domains, order.key_pem, chain)
        except AcmeError:
            raise
        except Exception as error:  # noqa: BLE001
            raise self.explain(error, subject) from None

    def fetch_issued(self, order_url: str) -> tuple[str, str | None]:
        """An order placed earlier (by an interrupted run): its status and, when valid, its chain."""
        subject = f"order {order_url}"
        try:
            data = self.acme()._post_as_get(order_url).json()
            if data.get("status") == messages.STATUS_VALID.name and data.get("certificate"):
                return data["status"], self.acme()._post_as_get(data["certificate"]).text
            return str(data.get("status")), None
        except Exception as error:  # noqa: BLE001
            raise self.explain(error, subject) from None

    def _poll_order(self, order: Order, deadline: float, subject: str, waiting_for: tuple[str, ...],
                    previous: requests.Response | None = None) -> tuple[str, dict]:
        """Poll the order while its status is one of ``waiting_for``: (status, order JSON)."""
        acme = self.acme()
        delays = self.poller.delays()
        if previous is not None:
            self.poller.wait(next(delays), previous, deadline)
        for delay in delays:
            response = acme._post_as_get(order.resource.uri)
            data = response.json()
            if data["status"] not in waiting_for:
                return data["status"], data
            if time.monotonic() >= deadline:
                raise AcmeError(subject, f"order still {data['status']} at the deadline")
            self.poller.wait(delay, response, deadline)
        raise AssertionError("unreachable")

    def _finalize(self, order: Order) -> requests.Response:
        csr = x509.load_pem_x509_csr(order.resource.csr_pem)
        return self.acme()._post(order.resource.body.finalize, messages.CertificateRequest(csr=csr))

    def _validation_failure(self, order: Order, subject: str, data: dict) -> AcmeError:
        acme = self.acme()
        failures: dict[str, str] = {}
        for challenge in order.challenges:
            body = messages.Authorization.from_json(acme._post_as_get(challenge.authz.uri).json())
            if body.status != messages.STATUS_VALID:
                reasons = [_problem(chall.error) for chall in body.challenges if chall.error is not None]
                failures[challenge.domain] = "; ".join(reasons) or f"authorization {body.status}"
        if not failures:
            error = messages.Error.from_json(data["error"]) if data.get("error") else None
            return AcmeError(subject, "the CA abandoned the order: " + _problem(error))
        return ValidationFailed(subject, failures)

    # -- renewal information (RFC 9773) ------------------------------------------------------------

    def renewal_window(self, cert_pem: bytes) -> tuple[Window | None, float]:
        """The CA's suggested window for this certificate and the seconds to wait before asking again.

        ``(None, 0)`` when the directory offers no renewalInfo.
        """
        base = self.renewal_info_url
        if base is None:
            return None, 0.0
        cert = x509.load_pem_x509_certificate(cert_pem)
        url = base.rstrip("/") + "/" + client._renewal_info_path_component(cert)
        try:
            response = self.acme().net.get(url, content_type="application/json")
            info = messages.RenewalInfo.from_json(response.json())
        except Exception as error:  # noqa: BLE001
            raise self.explain(error, f"renewal information at {url}") from None
        window = Window(info.suggested_window.start, info.suggested_window.end)
        retry = client.ClientV2.retry_after(response, 6 * 3600)
        return window, max(0.0, (retry - datetime.datetime.now()).total_seconds())


def _already_replaced(error: messages.Error) -> bool:
    return error.typ == messages.ERROR_PREFIX + "alreadyReplaced"


def _ident(authz: messages.AuthorizationResource) -> str:
    name = authz.body.identifier.value
    return f"*.{name}" if authz.body.wildcard else name
