"""A lighter request path for the ``acme`` library's ``ClientNetwork``: what a signed request costs.

Issuing many certificates at once is bound by the client's CPU, and most of it went to the
machinery around each request rather than to the request: requests' session (merging settings,
preparing, its adapter, urllib3's pool checks) about 0.5 ms per request, josepy's JWS (the
protected header and the payload serialised through its field machinery, ``indent=2``) about
0.12 ms, every response's JSON parsed twice. Here, with the same ``ClientNetwork`` interface
(``_post_once``, ``_check_response``, badNonce handling and the ``messages`` of the library are
untouched):

- **HTTP**: one keep-alive connection per thread and host (``http.client`` of the standard
  library, TLS verified against the CA bundle, or certifi's as requests does), a reused
  connection the server closed meanwhile reopened once; the answer as a ``requests.Response``
  (JSON parsed once), failures as requests' exceptions. With proxy variables in the environment,
  requests itself (which honours them).
- **JWS** (ES256 with an account URL, which is every request but newAccount): the protected
  header and the signature built directly with ``cryptography``; anything else goes through josepy.
- **Nonces**: one pool for every thread of the directory, so a thread takes the nonce another
  thread's answer brought instead of asking ``newNonce``.
"""

from __future__ import annotations

import base64
import collections
import http.client
import json
import os
import socket
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

import josepy as jose
import requests
from acme import client, errors
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from requests.structures import CaseInsensitiveDict

PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")
# Connection failures that mean "the server closed the kept-alive connection before reading":
# the request is sent again once, on a new connection.
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.CannotSendRequest)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def proxies_in_environment() -> bool:
    return any(os.environ.get(name) for name in PROXY_VARIABLES)


def tls_context(verify: bool | str) -> ssl.SSLContext:
    """What requests would verify against: a bundle file or directory, certifi's, or nothing."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if verify is True:
        from requests.utils import DEFAULT_CA_BUNDLE_PATH

        verify = DEFAULT_CA_BUNDLE_PATH
    if os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify)


class Nonces:
    """Nonces handed out by the CA, for any thread (as received: base64url text)."""

    def __init__(self) -> None:
        self._pool: collections.deque[str] = collections.deque()

    def add(self, nonce: str) -> None:
        self._pool.append(nonce)

    def take(self) -> str | None:
        try:
            return self._pool.popleft()
        except IndexError:
            return None


class _Response(requests.Response):
    """A response whose JSON is parsed once however often it is asked for."""

    _parsed: Any = None

    def json(self, **kwargs: Any) -> Any:
        if kwargs:
            return super().json(**kwargs)
        if self._parsed is None:
            self._parsed = json.loads(self.content)
        return self._parsed


class LeanNetwork(client.ClientNetwork):
    """``ClientNetwork`` on one keep-alive connection per host, direct ES256 JWS, shared nonces.

    One instance per thread (its connections are its own); ``nonces`` and ``context`` are shared.
    """

    def __init__(self, *args: Any, nonces: Nonces | None = None, context: ssl.SSLContext | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shared_nonces = nonces or Nonces()
        self.use_requests = proxies_in_environment()
        if not self.use_requests:
            # requests (when used at all: with proxies) need not look up the environment and ~/.netrc
            self.session.trust_env = False
        self.context = context or tls_context(self.verify_ssl)
        self._connections: dict[tuple[str, str, int], http.client.HTTPConnection] = {}
        # josepy keeps the key wrapped (ComparableKey)
        raw = getattr(self.key.key, "_wrapped", None) if isinstance(self.key, jose.JWKEC) else None
        self._signer = raw if isinstance(raw, ec.EllipticCurvePrivateKey) and isinstance(raw.curve, ec.SECP256R1) \
            and self.alg == jose.ES256 else None
        self._lock = threading.Lock()  # only guards against misuse from two threads

    # -- nonces (shared) ---------------------------------------------------------------------

    def _add_nonce(self, response: requests.Response) -> None:
        nonce = response.headers.get(self.REPLAY_NONCE_HEADER)
        if nonce is None:
            raise errors.MissingNonce(response)
        try:
            jose.b64.b64decode(nonce)
        except (ValueError, TypeError) as error:
            raise errors.BadNonce(nonce, error) from None
        self.shared_nonces.add(nonce)

    def _get_nonce(self, url: str, new_nonce_url: str) -> str:  # type: ignore[override]
        nonce = self.shared_nonces.take()
        if nonce is not None:
            return nonce
        if new_nonce_url is None:
            response = self.head(url)
        else:
            response = self._check_response(self.head(new_nonce_url), content_type=None)
        nonce = response.headers.get(self.REPLAY_NONCE_HEADER)
        if nonce is None:
            raise errors.MissingNonce(response)
        return nonce

    # -- JWS -----------------------------------------------------------------------------------

    def _wrap_in_jws(self, obj: jose.JSONDeSerializable, nonce: str, url: str) -> str:  # type: ignore[override]
        if self._signer is None or self.account is None:
            return super()._wrap_in_jws(obj, jose.b64.b64decode(nonce), url)
        protected = _b64(json.dumps({"alg": "ES256", "kid": self.account["uri"], "nonce": nonce, "url": url},
                                    separators=(",", ":")).encode())
        payload = _b64(obj.json_dumps().encode()) if obj else b""
        der = self._signer.sign(protected + b"." + payload, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        return (b'{"protected":"' + protected + b'","payload":"' + payload + b'","signature":"' + signature
                + b'"}').decode()

    # -- HTTP ----------------------------------------------------------------------------------

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        if self.use_requests or args:
            return super()._send_request(method, url, *args, **kwargs)
        headers = {"User-Agent": self.user_agent, **kwargs.get("headers", {})}
        data = kwargs.get("data")
        body = data.encode() if isinstance(data, str) else data
        if body is not None:
            headers["Content-Length"] = str(len(body))
        timeout = kwargs.get("timeout", self._default_timeout)
        parts = urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        key = (parts.scheme, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        with self._lock:
            for attempt in (0, 1):
                connection = self._connections.get(key)
                reused = connection is not None
                if connection is None:
                    connection = self._connect(key, timeout)
                try:
                    connection.request(method, target, body=body, headers=headers)
                    answer = connection.getresponse()
                    content = answer.read()
                except STALE as error:
                    self._drop(key)
                    if reused and attempt == 0:
                        continue
                    raise requests.exceptions.ConnectionError(error) from None
                except ssl.SSLError as error:
                    self._drop(key)
                    raise requests.exceptions.SSLError(error) from None
                except TimeoutError as error:
                    self._drop(key)
                    raise requests.exceptions.ReadTimeout(error) from None
                except (OSError, http.client.HTTPException) as error:
                    self._drop(key)
                    raise requests.exceptions.ConnectionError(error) from None
                if answer.will_close:
                    self._drop(key)
                return self._response(url, answer, content)
        raise AssertionError("unreachable")

    def _connect(self, key: tuple[str, str, int], timeout: float) -> http.client.HTTPConnection:
        scheme, host, port = key
        if scheme == "https":
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=timeout, context=self.context)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            connection.connect()
        except ssl.SSLError as error:
            raise requests.exceptions.SSLError(error) from None
        except TimeoutError as error:
            raise requests.exceptions.ConnectTimeout(error) from None
        except OSError as error:
            raise requests.exceptions.ConnectionError(error) from None
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connections[key] = connection
        return connection

    def _drop(self, key: tuple[str, str, int]) -> None:
        connection = self._connections.pop(key, None)
        if connection is not None:
            connection.close()

    @staticmethod
    def _response(url: str, answer: http.client.HTTPResponse, content: bytes) -> requests.Response:
        response = _Response()
        response.status_code = answer.status
        response.reason = answer.reason
        headers: CaseInsensitiveDict = CaseInsensitiveDict()
        for name, value in answer.getheaders():
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        response.headers = headers
        response._content = content
        response._content_consumed = True
        response.encoding = "utf-8"
        response.url = url
        return response

    def close(self) -> None:
        for key in list(self._connections):
            self._drop(key)
        self.session.close()
