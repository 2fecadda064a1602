"""The admin API on admin.host:admin.port (cozy-stack.md §2)."""

from __future__ import annotations

import base64
import json

from . import VERSION, fsck, instances, move, realtime
from .couch import CouchError, db_name
from .httpd import App, HTTPError, Request, Response, Router, json_response, text_response
from .instances import StackError, from_couch, resource
from .secret import BadHash
from .stack import Stack
from .tokens import parse_go_duration

JSONAPI = "application/vnd.api+json"


def echo_error(request: Request, status: int, message: str, headers=None) -> Response:
    """echo HTTPErrors: plain text, or ``{"error": …}`` with ``Accept: application/json`` (§2.1)."""
    if request.accepts("application/json"):
        return json_response(status, {"error": message}, headers=headers)
    return text_response(status, message, headers=headers)


def jsonapi_error(error: StackError) -> Response:
    body = {"errors": [{"status": str(error.status), "title": error.title, "detail": error.detail,
                        "source": error.source}]}
    return json_response(error.status, body, JSONAPI)


def version_body() -> dict:
    import platform

    return {"version": VERSION, "build_mode": "production", "build_time": "2026-07-02T00:00:00Z",
            "runtime_version": f"python{platform.python_version()} (cozy-stack double)"}


class AdminApp(App):
    name = "admin"

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.router = Router()
        r = self.router.add
        r("GET", "/version", self.version)
        r("GET", "/instances", self.list)
        r("POST", "/instances", self.create)
        r("GET", "/instances/count", self.count)
        r("POST", "/instances/token", self.token)
        r("GET", "/instances/:domain", self.show)
        r("PATCH", "/instances/:domain", self.modify)
        r("DELETE", "/instances/:domain", self.destroy)
        r("GET", "/instances/:domain/disk-usage", self.disk_usage)
        r("GET", "/instances/:domain/prefix", self.prefix)
        r("GET", "/instances/:domain/swift-prefix", self.swift_prefix)
        r("POST", "/instances/:domain/export", self.export)
        r("GET", "/instances/:domain/exports/:export-id/data", self.export_data)
        r("POST", "/instances/:domain/import", self.import_)
        r("GET", "/instances/:domain/last-activity", self.last_activity)
        r("DELETE", "/instances/:domain/sessions", self.clean_sessions)
        r("GET", "/instances/:domain/fsck", self.fsck)
        r("GET", "/realtime/", self.realtime)

    # --- plumbing
    def handle(self, request: Request) -> Response:
        handler, params, known = self.router.match(request.method, request.raw_path)
        if handler is None:
            return echo_error(request, 405 if known else 404, "Method Not Allowed" if known else "Not Found")
        problem = self.authenticate(request)
        if problem is not None:
            return problem
        try:
            return handler(request, **params)
        except StackError as error:
            return jsonapi_error(error)
        except move.ExportError as error:  # an echo.HTTPError
            return echo_error(request, error.status, error.message)
        except CouchError as error:
            return jsonapi_error(from_couch(error))

    def authenticate(self, request: Request) -> Response | None:
        """§2.1: only the password of Basic auth is checked, against the scrypt hash file."""
        header = request.header("Authorization")
        if not header:
            return echo_error(request, 401, "missing basic auth")
        scheme, _, value = header.partition(" ")
        try:
            if scheme.lower() != "basic":
                raise ValueError
            _, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            if not sep:
                raise ValueError
        except (ValueError, UnicodeDecodeError):
            return echo_error(request, 401, "invalid basic auth")
        path = self.stack.config.secret_file()
        if path is None:
            return echo_error(request, 500, "Could not find the admin passphrase file")
        try:
            hashed = path.read_text()
            ok = self.stack.verifier.check(password, hashed)
        except (OSError, BadHash):
            return echo_error(request, 500, "Could not read the admin passphrase file")
        if not ok:
            return echo_error(request, 403, "bad passphrase")
        return None

    # --- routes
    def version(self, request: Request) -> Response:
        return json_response(200, version_body())

    def list(self, request: Request) -> Response:
        docs = sorted(self.stack.instances.all(), key=lambda d: d["_id"])
        body: dict = {}
        limit = request.param("page[limit]")
        if limit:
            try:
                size = max(1, int(limit))
            except ValueError:
                raise StackError(400, "Bad Request", "page[limit]: not an integer") from None
            cursor = request.param("page[cursor]")
            if cursor:
                docs = [d for d in docs if d["_id"] >= cursor]
            skip = request.param("page[skip]")
            if skip and skip.isdigit():
                docs = docs[int(skip):]
            if len(docs) > size:
                body["links"] = {"next": f"/instances?page[limit]={size}&page[cursor]={docs[size]['_id']}"}
            docs = docs[:size]
        body = {"data": [resource(d) for d in docs], "meta": {"count": len(docs)}, **body}
        return json_response(200, body, JSONAPI)

    def count(self, request: Request) -> Response:
        return json_response(200, {"count": len(self.stack.instances.all())})

    def create(self, request: Request) -> Response:
        doc = self.stack.create_instance(request)
        return json_response(201, {"data": resource(doc)}, JSONAPI)

    def show(self, request: Request, domain: str) -> Response:
        return json_response(200, {"data": resource(self.stack.instances.require(domain))}, JSONAPI)

    def modify(self, request: Request, domain: str) -> Response:
        with self.stack.instances.lock:
            doc = self.stack.instances.require(domain)
            doc, settings = self.stack.instances.patch(doc, request)
            self.stack.instances.save(doc)
        self.stack.update_settings(doc, settings)
        # §2.1 / §9 gotcha 4: PATCH responses keep the secrets.
        return json_response(200, {"data": resource(doc, hide_secrets=False)}, JSONAPI)

    def destroy(self, request: Request, domain: str) -> Response:
        self.stack.destroy_instance(domain)
        return Response(204)

    def token(self, request: Request) -> Response:
        """§1.8 / files-data §4: a JWT as text/plain."""
        doc = self.stack.instances.require(request.param("Domain") or "")
        audience = request.param("Audience") or ""
        try:
            token = self.stack.make_token(doc, audience, request.param("Scope") or "", request.param("Subject") or "",
                                          request.param("Expire"))
        except LookupError:
            return echo_error(request, 400, f"Unknown audience {audience}")
        except ValueError:
            return echo_error(request, 400, "Invalid duration")
        return text_response(200, token)

    def disk_usage(self, request: Request, domain: str) -> Response:
        """``diskUsage``: ``diskUsageResult``, whose zero fields are omitted (``omitempty``) but ``used``."""
        doc = self.stack.instances.require(domain)
        used, trashed, count = self.stack.vfs(doc).usage()
        versions = versions_count = 0  # the double keeps no old versions of files
        body: dict = {"used": str(used + versions)}
        quota = int(doc.get("disk_quota") or 0)
        for name, value, text in (("quota", quota, True), ("doc_count", count, False), ("files", used, True),
                                  ("versions", versions, True), ("versions_count", versions_count, True)):
            if value:
                body[name] = str(value) if text else value
        if request.param("include") == "trash" and trashed:
            body["trashed"] = str(trashed)
        return json_response(200, body)

    def last_activity(self, request: Request, domain: str) -> Response:
        """``lastActivity``: the latest of 2018-01-01, the sessions' last_seen, the logins' created_at and the
        OAuth clients' last_refreshed_at / synchronized_at (sharing clients aside), as ``YYYY-MM-DD``."""
        doc = self.stack.instances.get(domain)
        if doc is None:
            raise StackError(404, "Not Found", "Instance not found")
        last = doc.get("last_activity_from_deleted_oauth_clients") or "2018-01-01T00:00:00Z"
        prefix = doc["prefix"]
        for doctype, fields in (("io.cozy.sessions.logins", ("created_at",)), ("io.cozy.sessions", ("last_seen",)),
                                ("io.cozy.oauth.clients", ("last_refreshed_at", "synchronized_at"))):
            for entry in self.stack.couch.all_docs(db_name(prefix, doctype)):
                if entry["_id"].startswith("_design/") or entry.get("client_kind") == "sharing":
                    continue
                for name in fields:
                    value = entry.get(name)
                    if isinstance(value, str) and value[:10] > last[:10]:
                        last = value
        return json_response(200, {"last-activity": last[:10]})

    def clean_sessions(self, request: Request, domain: str) -> Response:
        """``cleanSessions``: the two session databases go (a missing one is fine)."""
        doc = self.stack.instances.require(domain)
        for doctype in ("io.cozy.sessions", "io.cozy.sessions.logins"):
            self.stack.couch.delete_db(db_name(doc["prefix"], doctype))
        return Response(204)

    def fsck(self, request: Request, domain: str) -> Response:
        """``fsckHandler``: one ``FsckLog`` a line (200 even when there are some)."""
        doc = self.stack.instances.require(domain)
        flag = {name: (request.param(name) or "").lower() in ("1", "t", "true")
                for name in ("IndexIntegrity", "FilesConsistency", "FailFast")}
        logs = fsck.run(self.stack.vfs(doc), flag["IndexIntegrity"], flag["FilesConsistency"] and not
                        flag["IndexIntegrity"], flag["FailFast"])
        return Response(200, "".join(json.dumps(log) + "\n" for log in logs).encode(), "text/plain; charset=utf-8")

    def realtime(self, request: Request) -> Response:
        """``realtime.Ws`` on the admin API: a global subscriber (every instance's events)."""
        if (request.header("Upgrade") or "").lower() != "websocket":
            return echo_error(request, 400, "Bad Request")
        realtime.serve_socket(request.handler, self.stack.hub, None)
        return Response(101)

    def prefix(self, request: Request, domain: str) -> Response:
        return json_response(200, self.stack.instances.require(domain)["prefix"])

    def swift_prefix(self, request: Request, domain: str) -> Response:
        self.stack.instances.require(domain)
        return json_response(200, None)

    def export(self, request: Request, domain: str) -> Response:
        """``exporter``: ``admin-req`` parsed first (``strconv.ParseBool``), then the instance; 202 and the job."""
        value = request.param("admin-req", "")
        if value not in ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"):
            raise StackError(500, "Unqualified error", f'strconv.ParseBool: parsing "{value}": invalid syntax')
        doc = self.stack.instances.require(domain)
        job = move.start_export(self.stack, doc, value in ("1", "t", "T", "TRUE", "true", "True"))
        return json_response(202, job)

    def export_data(self, request: Request, domain: str, export_id: str) -> Response:
        doc = self.stack.instances.require(domain)
        return move.admin_part(self.stack, doc, export_id, request.param("cursor") or "")

    def import_(self, request: Request, domain: str) -> Response:
        """``importer``: the job is pushed whatever the URL; the worker fails on a bad one."""
        doc = self.stack.instances.require(domain)
        move.start_import(self.stack, doc, request.param("manifest_url") or "")
        return Response(204)

def _unused() -> None:  # keep imports used by type checkers only
    _ = (json, HTTPError, instances, parse_go_duration)
