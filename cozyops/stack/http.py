"""HTTP to cozy-stack (requests), and its three error shapes turned into one typed error.

cozy-stack answers errors as JSON:API (``{"errors":[{"status","title","detail","source"}]}``:
the admin API and /files), CouchDB-style flat JSON (``{"error","reason"}``: /data), or plain text
(authentication: ``missing basic auth``, ``Forbidden``). ``StackError`` carries status, title and
detail whatever the shape (see the files/data reference, section 0).
"""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter

from cozyops.errors import CozyopsError

TIMEOUT = 60.0
# A streamed body is sent in blocks this large (urllib3's default, 16 KiB, made a 300 MB upload
# 19,000 trips through Python, each fighting the SSH forward's threads for the GIL).
BLOCKSIZE = 1 << 20


class _LargeBlocks(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, blocksize=BLOCKSIZE, **kwargs)


class StackError(CozyopsError):
    """cozy-stack answered with an error."""

    def __init__(self, where: str, status: int, title: str, detail: str) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        super().__init__(where, f"{status} {title}" + (f": {detail}" if detail and detail != title else ""))


def error_from(response: requests.Response, where: str) -> StackError:
    status = response.status_code
    title, detail = response.reason or str(status), ""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        first = body["errors"][0]
        title, detail = str(first.get("title", title)), str(first.get("detail", ""))
    elif isinstance(body, list) and body and isinstance(body[0], dict):
        # A blocked instance: a bare list of JSON:API errors (web/middlewares/instance.go).
        title, detail = str(body[0].get("title", title)), str(body[0].get("detail", ""))
    elif isinstance(body, dict) and "error" in body:
        title, detail = str(body["error"]), str(body.get("reason", ""))
    elif response.text.strip():
        detail = response.text.strip().splitlines()[0][:200]
    return StackError(where, status, title, detail)


class Http:
    """A requests session on one base URL (the forwarded port), with a fixed Host header."""

    def __init__(self, base_url: str, host: str | None = None, timeout: float = TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.host = host
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy from the environment between us and the tunnel
        self.session.mount("http://", _LargeBlocks())
        self.session.mount("https://", _LargeBlocks())

    def request(self, method: str, path: str, where: str, expect: tuple[int, ...] = (200,), **kwargs: Any):
        headers = dict(kwargs.pop("headers", {}) or {})
        if self.host:
            headers["Host"] = self.host
        try:
            response = self.session.request(
                method, self.base_url + path, headers=headers, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as error:
            raise CozyopsError(where, f"no answer from cozy-stack: {type(error).__name__}") from None
        if response.status_code not in expect:
            raise error_from(response, where)
        return response

    def close(self) -> None:
        self.session.close()
