"""Reading a live Cozy v2 CouchDB (database ``cozy``): streaming, memory bounded, read only.

The reference (../shared/reference/cozy-v2-export.md §1.2, §5.2) says how: ``GET
/cozy/_all_docs?include_docs=true`` paged with a URL-encoded ``startkey`` and ``skip=1``, dispatch
on ``docType`` (case-insensitively), contents fetched from the Binary documents' attachments, and
nothing written into the v2 database (cozy-monitor puts a design doc there; we do not).

- The URL may carry credentials (``http://user:password@host:5984/``): they go to the HTTP
  session only; every message names the URL without its password (``display``).
- A page is ``PAGE_SIZE`` documents and at most ``MAX_PAGE`` bytes; a page past that is read
  again one document at a time, and a document past ``MAX_DOC`` bytes is skipped (reported): the
  memory used does not grow with the database.
- Attachments are streamed (``attachment``), never held whole.
- The database as a whole is refused (``CouchRefused``: exit 1, nothing written) when it cannot
  be reached, the credentials are wrong, it does not exist or holds no v2 document.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests

from cozyops.errors import CozyopsError

DEFAULT_DB = "cozy"
PAGE_SIZE = 100
MAX_PAGE = 16 << 20
MAX_DOC = 16 << 20
TIMEOUT = 60.0


class CouchRefused(CozyopsError):
    """The database cannot be read as a v2 database: nothing is read from it, nothing written."""


@dataclass(frozen=True)
class Skipped:
    """A document that is not read (too large, not JSON), with the reason."""

    doc_id: str
    reason: str


@dataclass(frozen=True)
class CouchUrl:
    server: str  # scheme://host:port/prefix, without credentials
    db: str
    user: str
    password: str = field(repr=False)  # never in a repr, a log line or a traceback's locals

    @property
    def display(self) -> str:
        """The URL for messages: the user name kept, the password never."""
        parts = urlsplit(self.server)
        netloc = (quote(self.user, safe="") + "@" if self.user else "") + parts.netloc
        return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/" + self.db, "", ""))

    @property
    def source_id(self) -> str:
        """What identifies this source in the ledger: the database's URL without credentials."""
        return "couchdb-" + hashlib.sha256(f"{self.server.rstrip('/')}/{self.db}".encode()).hexdigest()[:24]


PASSWORD_ENV = "COZYOPS_COUCHDB_PASSWORD"


def parse_url(url: str) -> CouchUrl:
    """``http(s)://[user:password@]host[:port][/prefix][/db]``: the database is the last path part,
    ``cozy`` when the URL names the server only (``/`` or no path). A user without a password in
    the URL takes its password from ``$COZYOPS_COUCHDB_PASSWORD``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # its text could hold a piece of the password: not repeated
        raise CouchRefused("--couchdb", "is not a valid URL (percent-encode / # ? : @ in the user and password)",
                           ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CouchRefused("--couchdb", "must be an http:// or https:// URL of the v2 CouchDB "
                           "(http://user:password@host:5984/cozy)")
    user = requests.utils.unquote(parts.username or "")
    password = requests.utils.unquote(parts.password or "")
    if user and not password:  # kept out of the command line (process listings, shell history)
        password = os.environ.get(PASSWORD_ENV, "")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host + (f":{port}" if port else "")
    path = parts.path.rstrip("/")
    if path:
        prefix, _, db = path.rpartition("/")
    else:
        prefix, db = "", DEFAULT_DB
    return CouchUrl(urlunsplit((parts.scheme, netloc, prefix + "/", "", "")), requests.utils.unquote(db),
                    user, password)


class _Body:
    """An attachment's content, streamed, with its announced length (a short body is an error)."""

    def __init__(self, where: str, response: requests.Response) -> None:
        self.where = where
        self.response = response
        self.size = int(response.headers.get("Content-Length") or -1)
        self.iterator = response.iter_content(1 << 20)
        self.buffer = b""
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        while (size < 0 or len(self.buffer) < size) and self.iterator is not None:
            try:
                chunk = next(self.iterator)
            except StopIteration:
                self.iterator = None
                break
            except requests.RequestException as error:
                raise CozyopsError(self.where, f"the download was cut ({type(error).__name__})") from None
            self.buffer += chunk
        if size < 0:
            data, self.buffer = self.buffer, b""
        else:
            data, self.buffer = self.buffer[:size], self.buffer[size:]
        self.read_bytes += len(data)
        if not data and 0 <= self.size != self.read_bytes:
            raise CozyopsError(self.where, f"the download ended after {self.read_bytes} of {self.size} bytes")
        return data

    def readable(self) -> bool:
        return True


class CouchSource:
    """The v2 database, read through its HTTP API (CouchDB 1.x, or pouchdb-server in the tests)."""

    def __init__(self, url: str, page_size: int = PAGE_SIZE, max_page: int = MAX_PAGE, max_doc: int = MAX_DOC,
                 timeout: float = TIMEOUT) -> None:
        self.url = parse_url(url)
        self.page_size = page_size
        self.max_page = max_page
        self.max_doc = max_doc
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False
        if self.url.user or self.url.password:
            self.session.auth = (self.url.user, self.url.password)

    @property
    def display(self) -> str:
        return self.url.display

    @property
    def name(self) -> str:
        return f"CouchDB {self.display}"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> CouchSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP --------------------------------------------------------------------------------

    def _db_url(self, path: str = "") -> str:
        return f"{self.url.server}{quote(self.url.db, safe='')}{path}"

    def _get(self, url: str, stream: bool = False, **params: Any) -> requests.Response:
        try:
            return self.session.get(url, params=params or None, timeout=self.timeout, stream=stream)
        except requests.RequestException as error:
            raise CouchRefused(self.name, f"cannot be reached ({_why(error)})",
                               "check the URL, and that CouchDB listens there") from None

    def _refuse_status(self, response: requests.Response, what: str) -> None:
        if response.status_code == 401:
            raise CouchRefused(self.name, "refused the credentials (401)",
                               "give the v2 CouchDB's user and password in the URL (/etc/cozy/couchdb.login)")
        if response.status_code == 403:
            raise CouchRefused(self.name, "denies access to the database (403)")
        if response.status_code == 404:
            raise CouchRefused(self.name, f"has no {what} (404): not a Cozy v2 database")
        if response.status_code != 200:
            raise CouchRefused(self.name, f"answered {response.status_code} for {what}")

    def _json(self, response: requests.Response, limit: int) -> Any | None:
        """The body as JSON if it is at most ``limit`` bytes; None when it is larger (not kept)."""
        body = bytearray()
        with contextlib.closing(response):
            for chunk in response.iter_content(1 << 16):
                body += chunk
                if len(body) > limit:
                    return None
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise CouchRefused(self.name, "answered something that is not JSON: is it CouchDB?") from None

    def check(self) -> dict:
        """The database's info; ``CouchRefused`` when it cannot be read as a CouchDB database."""
        response = self._get(self.url.server, stream=True)
        self._refuse_status(response, "server")
        welcome = self._json(response, 1 << 20)
        if not isinstance(welcome, dict) or not ({"couchdb", "express-pouchdb"} & set(welcome)):
            raise CouchRefused(self.name, "is not a CouchDB server")
        response = self._get(self._db_url(), stream=True)
        self._refuse_status(response, f"database {self.url.db!r}")
        info = self._json(response, 1 << 20)
        if not isinstance(info, dict) or "doc_count" not in info:
            raise CouchRefused(self.name, f"database {self.url.db!r} did not describe itself")
        return info

    # -- documents ---------------------------------------------------------------------------

    def docs(self) -> Iterator[dict | Skipped]:
        """Every document, in id order, a page at a time (reference §1.2, step 8; §5.2)."""
        startkey: str | None = None
        while True:
            params: dict[str, Any] = {"include_docs": "true", "limit": str(self.page_size)}
            if startkey is not None:
                params.update(startkey=json.dumps(startkey), skip="1")
            response = self._get(self._db_url("/_all_docs"), stream=True, **params)
            self._refuse_status(response, f"database {self.url.db!r}")
            page = self._json(response, self.max_page)
            rows = page.get("rows") if isinstance(page, dict) else None
            if page is None:  # too large a page: the same ids, one document at a time
                params.pop("include_docs")
                response = self._get(self._db_url("/_all_docs"), stream=True, **params)
                self._refuse_status(response, f"database {self.url.db!r}")
                ids = self._json(response, self.max_page)
                rows = [{"id": row["id"], "doc": None} for row in (ids or {}).get("rows", [])]
            if not isinstance(rows, list):
                raise CouchRefused(self.name, "answered _all_docs without rows")
            for row in rows:
                doc = row.get("doc") if "doc" in row else None
                if doc is None and "id" in row and "error" not in row:
                    doc = self._one(row["id"])
                if isinstance(doc, dict | Skipped):
                    yield doc
            if len(rows) < self.page_size:
                return
            startkey = rows[-1]["id"]

    def _one(self, doc_id: str) -> dict | Skipped | None:
        response = self._get(self._db_url("/" + quote(doc_id, safe="")), stream=True)
        if response.status_code == 404:
            return None
        self._refuse_status(response, f"document {doc_id}")
        doc = self._json(response, self.max_doc)
        if doc is None:
            return Skipped(doc_id, f"document larger than {self.max_doc} bytes")
        return doc if isinstance(doc, dict) else Skipped(doc_id, "not a JSON object")

    @contextlib.contextmanager
    def attachment(self, doc_id: str, name: str) -> Iterator[_Body | None]:
        """An attachment's content, streamed (``None`` when the document or attachment is missing)."""
        url = self._db_url("/" + quote(doc_id, safe="") + "/" + quote(name, safe=""))
        response = self._get(url, stream=True)
        with contextlib.closing(response):
            if response.status_code == 404:
                yield None
                return
            self._refuse_status(response, f"attachment {doc_id}/{name}")
            yield _Body(f"{self.name}: attachment {doc_id}/{name}", response)


def _why(error: requests.RequestException) -> str:
    """A short reason for a connection failure, without the URL (which could hold credentials)."""
    text = str(error)
    for marker in ("Connection refused", "Name or service not known", "timed out", "No route to host",
                   "Temporary failure in name resolution", "certificate verify failed"):
        if marker in text:
            return marker.lower()
    return type(error).__name__
