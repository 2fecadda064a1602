"""A small CouchDB client over HTTP (pouchdb-server in the lab), with cozy-stack's database names."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import threading
import time
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from . import FAULT

# The lab's deliberately broken build (lab/aptrepo.py STACK_BUILDS["broken"]) reads a registry that
# does not exist: every instance seems gone, as after a botched migration.
GLOBAL_INSTANCES = "global/instances-next" if FAULT == "registry" else "global/instances"
# A kept-alive connection idle longer than this is not reused: Node's HTTP server (pouchdb-server)
# closes idle connections after 5 s, and a request racing that close would be lost.
IDLE_REUSE = 4.0


def instance_prefix(domain: str) -> str:
    """cozy-stack.md §1.2: ``"cozy" + hex(sha256(domain)[:16])``."""
    return "cozy" + hashlib.sha256(domain.encode()).digest()[:16].hex()


def db_name(prefix: str, doctype: str) -> str:
    """``<prefix>/<doctype, . → ->`` (§1.2)."""
    return prefix + "/" + doctype.replace(".", "-")


# pouchdb-server words a few reasons differently from Apache CouchDB: cozy-stack passes CouchDB's on.
COUCHDB_REASONS = {"Document update conflict": "Document update conflict."}


def couchdb_reason(reason: str) -> str:
    return COUCHDB_REASONS.get(reason, reason)


class CouchError(Exception):
    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(f"{status} {error}: {reason}")
        self.status = status
        self.error = error
        self.reason = reason


class Couch:
    """CouchDB over HTTP/1.1 with one kept-alive connection per thread (as cozy-stack's Go client
    keeps its connections): a request costs a round trip, not a TCP handshake as well."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.auth = None
        if parts.username is not None:
            raw = f"{parts.username}:{parts.password or ''}".encode()
            self.auth = "Basic " + base64.b64encode(raw).decode()
        netloc = parts.hostname or "localhost"
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port:
            netloc += f":{parts.port}"
        self.base = urlunsplit((parts.scheme or "http", netloc, parts.path.rstrip("/"), "", ""))
        self.scheme = parts.scheme or "http"
        self.host = parts.hostname or "localhost"
        self.port = parts.port
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self._local = threading.local()

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it was used before (it may have been closed since)."""
        conn, last = getattr(self._local, "conn", None), getattr(self._local, "last", 0.0)
        if conn is not None and time.monotonic() - last < IDLE_REUSE:
            return conn, True
        if conn is not None:
            conn.close()
        factory = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = factory(self.host, self.port, timeout=self.timeout)
        self._local.conn = conn
        return conn, False

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def request(self, method: str, path: str, body=None, query: dict | None = None, raw: bool = False):
        """(status, decoded JSON) for any status; CouchError(0, ...) when unreachable."""
        target = self.prefix + path
        if query:
            target += "?" + urlencode({k: json.dumps(v) if isinstance(v, (bool, list, dict)) else v
                                       for k, v in query.items()})
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.auth:
            headers["Authorization"] = self.auth
        for attempt in (1, 2):
            conn, reused = self._connection()
            try:
                conn.request(method, target, body=data, headers=headers)
                resp = conn.getresponse()
                status, payload = resp.status, resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
                self._drop()
                # A kept-alive connection the server had closed: the request never reached it.
                if reused and attempt == 1:
                    continue
                raise CouchError(0, "unreachable", f"CouchDB at {self.base} is unreachable: {error}") from None
            except (http.client.HTTPException, OSError) as error:
                self._drop()
                raise CouchError(0, "unreachable", f"CouchDB at {self.base} is unreachable: {error}") from None
            if resp.will_close:
                self._drop()
            else:
                self._local.last = time.monotonic()
            break
        if raw:
            return status, payload
        try:
            return status, json.loads(payload) if payload else None
        except ValueError:
            return status, {"error": "bad_response", "reason": payload[:200].decode(errors="replace")}

    def ok(self, method: str, path: str, body=None, query: dict | None = None, allow=()):
        status, data = self.request(method, path, body, query)
        if status >= 400 and status not in allow:
            data = data if isinstance(data, dict) else {}
            raise CouchError(status, str(data.get("error", "error")), couchdb_reason(str(data.get("reason", ""))))
        return status, data

    @staticmethod
    def db(name: str) -> str:
        return "/" + quote(name, safe="")

    @staticmethod
    def doc(name: str, doc_id: str) -> str:
        # Design documents keep their slash, as CouchDB wants.
        if doc_id.startswith("_design/"):
            return Couch.db(name) + "/_design/" + quote(doc_id[len("_design/"):], safe="")
        return Couch.db(name) + "/" + quote(doc_id, safe="")

    # --- databases
    def create_db(self, name: str) -> None:
        self.ok("PUT", self.db(name), allow=(412,))

    def db_exists(self, name: str) -> bool:
        status, _ = self.request("GET", self.db(name))
        return status == 200

    def delete_db(self, name: str) -> None:
        self.ok("DELETE", self.db(name), allow=(404,))

    def all_dbs(self) -> list[str]:
        return self.ok("GET", "/_all_dbs")[1]

    def instance_dbs(self, prefix: str) -> list[tuple[str, str]]:
        """(name as listed, doctype) of an instance's databases.

        CouchDB lists ``<prefix>/<doctype>``; pouchdb-server 4.2.0 stores and lists the same
        name without its slash (it passes names through sanitize-filename), while still
        answering to the real, URL-encoded name. A prefix is ``cozy`` + 32 hex digits, so
        either form is unambiguous.
        """
        found = []
        for name in self.all_dbs():
            if name.startswith(prefix):
                rest = name[len(prefix):]
                found.append((name, rest.lstrip("/").replace("-", ".")))
        return found

    # --- documents
    def get(self, name: str, doc_id: str) -> dict | None:
        status, data = self.request("GET", self.doc(name, doc_id))
        if status == 404:
            return None
        if status >= 400:
            raise CouchError(status, str(data.get("error")), str(data.get("reason")))
        return data

    def put(self, name: str, doc: dict) -> dict:
        """Create or update ``doc`` (with its ``_id``); sets its new ``_rev`` and returns it."""
        _, data = self.ok("PUT", self.doc(name, doc["_id"]), doc)
        doc["_rev"] = data["rev"]
        return doc

    def delete(self, name: str, doc_id: str, rev: str) -> None:
        self.ok("DELETE", self.doc(name, doc_id), query={"rev": rev})

    def find(self, name: str, selector: dict, limit: int = 100000, sort: list | None = None) -> list[dict]:
        body: dict = {"selector": selector, "limit": limit}
        if sort:
            body["sort"] = sort
        status, data = self.request("POST", self.db(name) + "/_find", body)
        if status == 404:
            return []
        if status >= 400:
            raise CouchError(status, str(data.get("error")), str(data.get("reason")))
        return data.get("docs", [])

    def all_docs(self, name: str, include_docs: bool = True) -> list[dict]:
        status, data = self.request("GET", self.db(name) + "/_all_docs", query={"include_docs": include_docs})
        if status == 404:
            return []
        if status >= 400:
            raise CouchError(status, str(data.get("error")), str(data.get("reason")))
        return [row["doc"] if include_docs else row for row in data["rows"]]
