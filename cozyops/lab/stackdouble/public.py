"""The public API on host:port, routed by the Host header (cozy-stack.md §4.1; files-data reference).

``/version`` and ``/status`` answer on any host. An app host (``drive.alice.example.org`` nested,
``alice-drive.example.org`` flat) answers for its instance and app; any other host is looked up
as an instance's domain or alias (an old domain gets a 308), then the files, references, data,
apps and move routes of that instance.
"""

from __future__ import annotations

import base64
import html
import json
from urllib.parse import quote

from . import apps as apps_mod
from . import move, tokens
from .admin import JSONAPI, jsonapi_error, version_body
from .cliroutes import CliRoutes
from .couch import Couch, CouchError, couchdb_reason, db_name
from .httpd import App, HTTPError, Request, Response, Router, json_response, text_response
from .instances import StackError, from_couch
from .stack import Stack
from .vfs import FILES, ROOT, TRASH, file_resource, parse_tags

# files-data §3: reserved doctypes.
READ_ONLY = {"io.cozy.files", "io.cozy.files.versions", "io.cozy.jobs", "io.cozy.triggers", "io.cozy.apps",
             "io.cozy.konnectors", "io.cozy.notifications", "io.cozy.remote.requests", "io.cozy.sessions.logins",
             "io.cozy.notes.steps", "io.cozy.notes.images", "com.bitwarden.contacts"}
HIDDEN = {"io.cozy.permissions", "io.cozy.sharings", "io.cozy.shared", "io.cozy.sessions", "io.cozy.oauth.clients",
          "io.cozy.oauth.access_codes", "io.cozy.files.archives", "io.cozy.files.sizes", "io.cozy.files.thumbnails",
          "io.cozy.jobs.events", "io.cozy.triggers.state", "io.cozy.remote.secrets", "instances",
          "io.cozy.settings.instance", "io.cozy.sharings.answers", "io.cozy.exports"}
FILES_PAGE, FILES_PAGE_MAX = 30, 1000
REFS_PAGE, REFS_PAGE_MAX = 100, 1000
DATA_LIMIT, DATA_LIMIT_MAX = 100, 1000


def hidden(doctype: str) -> bool:
    return doctype in HIDDEN or doctype.startswith(("io.cozy.sharings.", "io.cozy.oauth."))


# --- error families (files-data §0)
def files_auth_error(request: Request, status: int, message: str, headers=None) -> HTTPError:
    if request.accepts("application/json"):
        return HTTPError(json_response(status, {"error": message}, headers=headers))
    if request.accepts("text/html"):
        page = f"<!DOCTYPE html><html><body><h1>{status}</h1><p>{html.escape(message)}</p></body></html>\n"
        return HTTPError(Response(status, page.encode(), "text/html; charset=UTF-8", headers))
    return HTTPError(text_response(status, message, headers=headers))


def data_echo_error(status: int, message: str, headers=None) -> HTTPError:
    return HTTPError(json_response(status, {"error": f"code={status}, message={message}"}, headers=headers))


def data_couch_error(status: int, error: str, reason: str) -> HTTPError:
    return HTTPError(json_response(status, {"ok": False, "status": str(status), "error": error, "reason": reason}))


def data_typed_error(status: int, title: str, detail: str) -> HTTPError:
    return HTTPError(json_response(status, {"error": f"{title}({status}): {detail}"}))


class Permissions:
    def __init__(self, rules: list[tokens.Rule]) -> None:
        self.rules = rules

    def allows(self, doctype: str, verb: str, ids: list[str] | None = None, whole: bool = False) -> bool:
        for rule in self.rules:
            if not rule.allows(doctype, verb):
                continue
            if not rule.values:
                return True
            if not whole and ids and set(ids) & set(rule.values):
                return True
        return False


class PublicApp(CliRoutes, App):
    name = "public"

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.router = Router()
        r = self.router.add
        r("GET", "/files/metadata", self.file_by_path)
        r("GET", "/files/download", self.download_by_path)
        r("GET", "/files/download/:id", self.download)
        r("POST", "/files/", self.create_in_root)
        r("POST", "/files/:dir-id", self.create)
        r("GET", "/files/:id", self.show_file)
        r("GET", "/files/:id/relationships/referenced_by", self.list_referenced_by)
        r("POST", "/files/:id/relationships/referenced_by", self.add_referenced_by)
        r("DELETE", "/files/:id/relationships/referenced_by", self.remove_referenced_by)
        r("POST", "/data/:doctype/", self.data_create)
        r("GET|POST", "/data/:doctype/_all_docs", self.data_all_docs)
        r("GET", "/data/:doctype/_normal_docs", self.data_normal_docs)
        r("POST", "/data/:doctype/_index", self.data_index)
        r("POST", "/data/:doctype/_find", self.data_find)
        r("GET", "/data/:doctype/:id", self.data_get)
        r("PUT", "/data/:doctype/:id", self.data_put)
        r("DELETE", "/data/:doctype/:id", self.data_delete)
        r("GET", "/data/:doctype/:id/relationships/references", self.refs_list)
        r("POST", "/data/:doctype/:id/relationships/references", self.refs_add)
        r("DELETE", "/data/:doctype/:id/relationships/references", self.refs_remove)
        r("GET", "/apps/", self.apps_list)
        r("GET", "/apps/:slug", self.apps_show)
        r("POST", "/apps/:slug", self.apps_install)
        r("PUT", "/apps/:slug", self.apps_update)
        r("GET", "/move/exports/:mac", self.export_manifest)
        r("GET", "/move/exports/data/:mac", self.export_data)
        for method, pattern, name in CliRoutes.ROUTES:  # DELETE /apps/:slug, /konnectors, /settings/passphrase
            r(method, pattern, getattr(self, name))
        r("GET", "/auth/login", self.login_page)
        r("GET", "/", self.home)

    # --- routing by host
    def handle(self, request: Request) -> Response:
        path = request.raw_path
        if path == "/version":
            if request.method not in ("GET", "HEAD"):
                return text_response(405, "Method Not Allowed")
            return json_response(200, version_body())
        if path == "/status":
            return self.status(request)
        host = request.host
        try:
            parent, slug = self.split_host(host)
            known = self.stack.instances.all()  # read once for the look-ups below
            if slug:
                inst = self.stack.instances.get(parent, docs=known)
                if inst is not None:
                    return self.serve_app(request, inst, slug)
            inst = self.stack.instances.get(host, docs=known)
            if inst is None:
                old = self.stack.instances.by_old_domain(host, docs=known)
                if old is not None:
                    return Response(308, headers=[("Location", f"https://{old['domain']}{request.target}")])
                return files_auth_error(request, 404, "Instance not found").response
            handler, params, known = self.router.match(request.method, path)
            if handler is None:
                return text_response(405 if known else 404, "Method Not Allowed" if known else "Not Found")
            request.vars["instance"] = inst
            if inst.get("blocked") and not path.startswith("/move/"):
                return jsonapi_error(StackError(503, "Service Unavailable", "Instance is blocked"))
            return handler(request, inst, **params)
        except StackError as error:
            if path.startswith("/data/"):
                return data_typed_error(error.status, error.title, error.detail).response
            return jsonapi_error(error)
        except CouchError as error:
            if path.startswith("/data/"):
                return data_couch_error(error.status or 500, error.error, error.reason).response
            return jsonapi_error(from_couch(error))

    def split_host(self, host: str) -> tuple[str, str]:
        """§4.1 ``SplitCozyHost``: nested ``<app>.<instance>``; flat ``<user>-<app>.<rest>`` on the first ``-``."""
        first, dot, rest = host.partition(".")
        if not dot:
            return host, ""
        if self.stack.flat:
            user, dash, app = first.partition("-")
            return (f"{user}.{rest}", app) if dash else (host, "")
        return rest, first

    def status(self, request: Request) -> Response:
        try:
            self.stack.couch.ok("GET", "/")
            couch = "healthy"
        except CouchError:
            couch = "unhealthy"
        fs = "healthy" if self.stack.fs_root.is_dir() else "unhealthy"
        ok = couch == fs == "healthy"
        body = {"cache": "healthy", "couchdb": couch, "fs": fs, "status": "OK" if ok else "KO",
                "message": "OK" if ok else "KO"}
        return json_response(200 if ok else 502, body)

    # --- app subdomains and pages
    def serve_app(self, request: Request, inst: dict, slug: str) -> Response:
        app = self.stack.apps(inst).get(slug)
        if app is None or app.get("state") != "ready":
            return files_auth_error(request, 404, "Application not found").response
        # No session in the double: every app page asks for the login, as cozy-stack does without one.
        app_url = f"https://{request.host}{request.target}"
        location = f"https://{inst['domain']}/auth/login?redirect={quote(app_url, safe='')}"
        return Response(302, headers=[("Location", location)])

    def login_page(self, request: Request, inst: dict) -> Response:
        name = html.escape(inst["domain"])
        page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Log in to {name}</title></head>"
                f"<body data-cozy-domain=\"{name}\"><h1>{name}</h1><form method=\"post\" action=\"/auth/login\">"
                "<input type=\"password\" name=\"passphrase\"></form></body></html>\n")
        return Response(200, page.encode(), "text/html; charset=UTF-8")

    def home(self, request: Request, inst: dict) -> Response:
        return Response(302, headers=[("Location", f"https://{inst['domain']}/auth/login")])

    # --- tokens and permissions (files-data §0, §4)
    def permissions(self, request: Request, inst: dict, family: str) -> Permissions:
        token = None
        header = request.header("Authorization") or ""
        if header.lower().startswith("bearer "):
            token = header[7:].strip()
        elif header.lower().startswith("basic "):
            try:
                token = base64.b64decode(header[6:].strip()).decode().partition(":")[2]
            except ValueError:
                token = None
        if not token:
            token = request.param("bearer_token")
        if not token:
            raise self.auth_error(request, family, 401, "No token in request")
        try:
            claims = tokens.verify(token, self.stack.secrets_of(inst), inst["domain"])
        except tokens.TokenError as error:
            headers = None
            if error.expired:
                headers = [("WWW-Authenticate",
                            'Bearer error="invalid_token" error_description="The access token expired"')]
            raise self.auth_error(request, family, error.status, error.message, headers) from None
        audience = claims.get("aud")
        if audience == "cli":
            try:
                return Permissions(tokens.parse_scope(str(claims.get("scope") or "")))
            except ValueError:
                raise self.auth_error(request, family, 400, "Permission scope is empty or malformed") from None
        if audience in ("app", "konn"):
            # The double's apps ask for no permission in their manifest.
            return Permissions([])
        raise self.auth_error(request, family, 400, "Invalid JWT token")

    def auth_error(self, request: Request, family: str, status: int, message: str, headers=None) -> HTTPError:
        if family == "data":
            return data_echo_error(status, message, headers)
        return files_auth_error(request, status, message, headers)

    def forbidden(self, request: Request, family: str) -> HTTPError:
        return self.auth_error(request, family, 403, "Forbidden")

    # --- files (files-data §1)
    def _file_allowed(self, request, vfs, perms: Permissions, verb: str, doc: dict | None) -> None:
        if perms.allows(FILES, verb):
            return
        ids = [doc["_id"], *vfs.ancestors(doc)] if doc else []
        if ids and perms.allows(FILES, verb, ids):
            return
        raise self.forbidden(request, "files")

    def create_in_root(self, request: Request, inst: dict) -> Response:
        return self.create(request, inst, ROOT)

    def create(self, request: Request, inst: dict, dir_id: str) -> Response:
        perms = self.permissions(request, inst, "files")
        vfs = self.stack.vfs(inst)
        kind = request.param("Type")
        if kind not in ("file", "directory"):
            raise StackError(422, "Unprocessable Entity", "Invalid document type", {"pointer": "/data/attributes/type"})
        parent = vfs.get(dir_id)
        self._file_allowed(request, vfs, perms, "POST", parent)
        tags = parse_tags(request.param("Tags"))
        if kind == "directory":
            if request.param("Path") is not None and dir_id == ROOT and not request.param("Name"):
                path = request.param("Path")
                if not path.startswith("/"):
                    raise StackError(422, "Unprocessable Entity", "Invalid path", {"parameter": "path"})
                doc = vfs.mkdir_path(path, request.param("Recursive") == "true", tags)
            else:
                from .vfs import parse_date_header, parse_time

                date = parse_date_header(request.header("Date"))
                created = parse_time(request.param("CreatedAt")) or date
                updated = parse_time(request.param("UpdatedAt")) or date
                doc = vfs.mkdir(dir_id, request.param("Name"), tags, created, updated, parent=parent)
            return json_response(201, {"data": file_resource(doc, full=False)}, JSONAPI)
        quota = int(inst.get("disk_quota") or 0)
        doc = vfs.upload(dir_id, request.param("Name"), request, quota, parent=parent)
        return json_response(201, {"data": file_resource(doc)}, JSONAPI)

    def _dir_document(self, request: Request, vfs, doc: dict) -> dict:
        resource = file_resource(doc)
        if doc.get("type") != "directory":
            return {"data": resource}
        children = vfs.children(doc["_id"])
        try:
            limit = int(request.param("page[limit]") or FILES_PAGE)
        except ValueError:
            limit = FILES_PAGE
        limit = FILES_PAGE if limit <= 0 else min(limit, FILES_PAGE_MAX)
        cursor = request.param("page[cursor]")
        start = 0
        if cursor:
            try:
                key = json.loads(cursor)
                after = (key[1], key[2].encode())
            except (ValueError, IndexError, TypeError, AttributeError):
                raise StackError(400, "Bad Request", "Invalid cursor", {"parameter": "page[cursor]"}) from None
            start = next((i for i, c in enumerate(children)
                          if (c.get("type", ""), c.get("name", "").encode()) >= after), len(children))
        page = children[start:start + limit]
        contents: dict = {"meta": {"count": len(children)},
                          "data": [{"type": FILES, "id": c["_id"]} for c in page]}
        body: dict = {"data": resource, "included": [file_resource(c) for c in page]}
        if start + limit < len(children):
            nxt = children[start + limit]
            cursor = json.dumps([doc["_id"], nxt.get("type"), nxt.get("name")], separators=(",", ":"))
            link = f"/files/{doc['_id']}?page[cursor]={quote(cursor, safe='')}&page[limit]={limit}"
            contents["links"] = {"next": link}
            body["links"] = {"next": link}
        resource["relationships"]["contents"] = contents
        resource["relationships"]["not_synchronized_on"] = {
            "links": {"self": f"/files/{doc['_id']}/relationships/not_synchronized_on"},
            "data": doc.get("not_synchronized_on") or [],
        }
        return body

    def show_file(self, request: Request, inst: dict, id: str) -> Response:
        perms = self.permissions(request, inst, "files")
        vfs = self.stack.vfs(inst)
        doc = vfs.get(id)
        if doc is None:
            if request.method == "HEAD":
                return Response(404)
            raise StackError(404, "Not Found", "file does not exist")
        self._file_allowed(request, vfs, perms, "GET", doc)
        if request.method == "HEAD":
            return Response(200)
        return json_response(200, self._dir_document(request, vfs, doc), JSONAPI)

    def _path_param(self, request: Request) -> str:
        import posixpath

        path = request.param("Path") or ""
        if not path.startswith("/"):
            raise StackError(400, "Bad Request", "Path should be absolute", {"parameter": "Path"})
        return posixpath.normpath(path).replace("//", "/")

    def file_by_path(self, request: Request, inst: dict) -> Response:
        perms = self.permissions(request, inst, "files")
        path = self._path_param(request)
        vfs = self.stack.vfs(inst)
        doc = vfs.by_path(path)
        if doc is None:
            raise StackError(404, "Not Found", "file does not exist")
        self._file_allowed(request, vfs, perms, "GET", doc)
        return json_response(200, self._dir_document(request, vfs, doc), JSONAPI)

    def download_by_path(self, request: Request, inst: dict) -> Response:
        perms = self.permissions(request, inst, "files")
        vfs = self.stack.vfs(inst)
        doc = vfs.by_path(self._path_param(request))
        return self._download(request, vfs, perms, doc)

    def download(self, request: Request, inst: dict, id: str) -> Response:
        perms = self.permissions(request, inst, "files")
        vfs = self.stack.vfs(inst)
        return self._download(request, vfs, perms, vfs.get(id))

    def _download(self, request: Request, vfs, perms: Permissions, doc: dict | None) -> Response:
        if doc is None or doc.get("type") != "file":
            raise StackError(404, "Not Found", "file does not exist")
        self._file_allowed(request, vfs, perms, "GET", doc)
        path = vfs.disk_path(vfs.path_of(doc))
        etag = f'"{doc.get("md5sum", "")}"'
        name = doc["name"]
        kind = "attachment" if request.param("Dl") == "1" else "inline"
        ascii_name = name.encode("ascii", "replace").decode().replace('"', "")
        disposition = f'{kind}; filename="{ascii_name}"'
        if ascii_name != name:
            disposition += f"; filename*=UTF-8''{quote(name, safe='')}"
        headers = [("Content-Disposition", disposition), ("Etag", etag), ("Accept-Ranges", "bytes")]
        if request.header("If-None-Match") in (etag, doc.get("md5sum")):
            return Response(304, headers=headers)
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        ranged = request.header("Range")
        if ranged and ranged.startswith("bytes=") and "," not in ranged:
            first, _, last = ranged[6:].partition("-")
            try:
                if first:
                    start, end = int(first), min(int(last) if last else size - 1, size - 1)
                else:
                    start, end = max(size - int(last), 0), size - 1
            except ValueError:
                start, end = 0, size - 1
            if start > end or start >= size:
                return Response(416, headers=[("Content-Range", f"bytes */{size}")])
            status = 206
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        length = end - start + 1 if size else 0

        def pieces():
            with open(path, "rb") as stream:
                stream.seek(start)
                left = length
                while left > 0:
                    piece = stream.read(min(65536, left))
                    if not piece:
                        break
                    left -= len(piece)
                    yield piece

        return Response(status, pieces(), doc.get("mime") or "application/octet-stream", headers, length)

    # --- references (files-data §2)
    def _refs_body(self, request: Request) -> list[dict]:
        try:
            body = request.json()
            data = body["data"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise StackError(400, "Bad Request", "JSON input is malformed or is missing mandatory fields") from None
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise StackError(400, "Bad Request", "JSON input is malformed or is missing mandatory fields")
        return data

    def _refs_answer(self, doc: dict) -> Response:
        refs = [{"id": r.get("id"), "type": r.get("type")} for r in doc.get("referenced_by") or []]
        return json_response(200, {"data": refs, "meta": {"rev": doc["_rev"], "count": len(refs)}}, JSONAPI)

    def list_referenced_by(self, request: Request, inst: dict, id: str) -> Response:
        perms = self.permissions(request, inst, "files")
        vfs = self.stack.vfs(inst)
        doc = vfs.require(id)
        self._file_allowed(request, vfs, perms, "GET", doc)
        refs = [{"id": r.get("id"), "type": r.get("type")} for r in doc.get("referenced_by") or []]
        return json_response(200, {"data": refs, "meta": {"count": len(refs)}}, JSONAPI)

    def add_referenced_by(self, request: Request, inst: dict, id: str) -> Response:
        perms = self.permissions(request, inst, "files")
        vfs = self.stack.vfs(inst)
        doc = vfs.require(id)
        self._file_allowed(request, vfs, perms, "PATCH", doc)
        return self._refs_answer(vfs.add_refs(doc, self._refs_body(request)))

    def remove_referenced_by(self, request: Request, inst: dict, id: str) -> Response:
        perms = self.permissions(request, inst, "files")
        vfs = self.stack.vfs(inst)
        doc = vfs.require(id)
        self._file_allowed(request, vfs, perms, "DELETE", doc)
        return self._refs_answer(vfs.remove_refs(doc, self._refs_body(request)))

    def _refs_allowed(self, request, perms: Permissions, doctype: str, doc_id: str, verb: str) -> None:
        files_verb = "GET" if verb == "GET" else "PATCH"
        if perms.allows(FILES, files_verb) or perms.allows(doctype, "GET" if verb == "GET" else "PUT", [doc_id]):
            return
        raise self.forbidden(request, "data")

    def refs_list(self, request: Request, inst: dict, doctype: str, id: str) -> Response:
        perms = self.permissions(request, inst, "data")
        self._refs_allowed(request, perms, doctype, id, "GET")
        vfs = self.stack.vfs(inst)
        docs = [d for d in self.stack.couch.find(vfs.db, {"referenced_by": {"$elemMatch": {"type": doctype,
                                                                                           "id": id}}})]
        sort = request.param("sort") or "id"
        if sort.lstrip("-") == "datetime":
            docs.sort(key=lambda d: d.get("created_at", ""), reverse=sort.startswith("-"))
        else:
            docs.sort(key=lambda d: d["_id"], reverse=sort.startswith("-"))
        try:
            limit = int(request.param("page[limit]") or REFS_PAGE)
        except ValueError:
            limit = REFS_PAGE
        limit = REFS_PAGE if limit <= 0 else min(limit, REFS_PAGE_MAX)
        start = 0
        if request.param("page[skip]", "").isdigit():
            start = int(request.param("page[skip]"))
        elif request.param("page[cursor]"):
            cursor = request.param("page[cursor]")
            start = next((i for i, d in enumerate(docs) if d["_id"] == cursor), len(docs))
        page = docs[start:start + limit]
        body: dict = {"data": [{"id": d["_id"], "type": FILES} for d in page], "meta": {"count": len(docs)}}
        if start + limit < len(docs):
            body["links"] = {"next": f"/data/{doctype}/{quote(id, safe='')}/relationships/references"
                                     f"?page[cursor]={quote(docs[start + limit]['_id'])}&page[limit]={limit}"}
        if request.param("include") == "files":
            body["included"] = [file_resource(d) for d in page]
        return json_response(200, body)

    def _refs_change(self, request: Request, inst: dict, doctype: str, id: str, add: bool) -> Response:
        perms = self.permissions(request, inst, "data")
        self._refs_allowed(request, perms, doctype, id, "PUT")
        try:
            items = self._refs_body(request)
        except StackError as error:
            raise data_typed_error(400, "Bad Request", error.detail) from None
        vfs = self.stack.vfs(inst)
        docs = []
        for item in items:
            doc = vfs.get(str(item.get("id", "")))
            if doc is None:
                raise data_typed_error(404, "Not Found", "file does not exist")
            docs.append(doc)
        for doc in docs:
            ref = [{"type": doctype, "id": id}]
            vfs.add_refs(doc, ref) if add else vfs.remove_refs(doc, ref)
        return Response(204)

    def refs_add(self, request: Request, inst: dict, doctype: str, id: str) -> Response:
        return self._refs_change(request, inst, doctype, id, True)

    def refs_remove(self, request: Request, inst: dict, doctype: str, id: str) -> Response:
        return self._refs_change(request, inst, doctype, id, False)

    # --- data (files-data §3)
    def _data_access(self, request: Request, inst: dict, doctype: str, verb: str, doc_id: str | None = None,
                     whole: bool = False) -> str:
        perms = self.permissions(request, inst, "data")
        if not tokens.valid_doctype(doctype):
            raise data_echo_error(403, f"{doctype} is not a valid doctype name")
        if hidden(doctype):
            raise data_echo_error(403, f"reserved doctype {doctype} {'unreadable' if verb == 'GET' else 'unwritable'}")
        if verb != "GET" and doctype in READ_ONLY:
            raise data_echo_error(403, f"reserved doctype {doctype} unwritable")
        if not perms.allows(doctype, verb, [doc_id] if doc_id else None, whole):
            raise data_echo_error(403, "Forbidden")
        return db_name(inst["prefix"], doctype)

    def _json_body(self, request: Request):
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError) as error:
            raise data_typed_error(400, "Bad Request", str(error)) from None
        if not isinstance(body, dict):
            raise data_typed_error(400, "Bad Request", "the body is not a JSON object")
        return body

    def _couch(self, method: str, path: str, body=None, query=None, allow=()):
        status, data = self.stack.couch.request(method, path, body, query)
        if status >= 400 and status not in allow:
            data = data if isinstance(data, dict) else {}
            raise data_couch_error(status, str(data.get("error", "error")), couchdb_reason(str(data.get("reason", ""))))
        return status, data

    def data_create(self, request: Request, inst: dict, doctype: str) -> Response:
        db = self._data_access(request, inst, doctype, "POST")
        doc = self._json_body(request)
        if "_id" in doc:
            raise data_couch_error(400, "defined_id", "document _id should be empty")
        self.stack.couch.create_db(db)
        import uuid

        doc = {"_id": uuid.uuid4().hex, **doc}
        _, answer = self._couch("PUT", Couch.doc(db, doc["_id"]), doc)
        doc["_rev"] = answer["rev"]
        return json_response(201, {"ok": True, "id": doc["_id"], "rev": doc["_rev"], "type": doctype,
                                   "data": {**doc, "_type": doctype}})

    def data_get(self, request: Request, inst: dict, doctype: str, id: str) -> Response:
        db = self._data_access(request, inst, doctype, "GET", id)
        if id.startswith("_"):
            raise data_couch_error(400, "bad_id", "Only reserved document ids may start with underscore.")
        status, doc = self._couch("GET", Couch.doc(db, id), allow=(404,))
        if status == 404:
            if not self.stack.couch.db_exists(db):
                raise data_couch_error(404, "not_found", "wrong_doctype")
            raise data_couch_error(404, "not_found", self._missing_reason(db, id))
        return json_response(200, {**doc, "_type": doctype})

    def _missing_reason(self, db: str, doc_id: str) -> str:
        """CouchDB's ``deleted`` or ``missing`` (pouchdb-server says ``missing`` for both)."""
        status, data = self.stack.couch.request("POST", Couch.db(db) + "/_all_docs", {"keys": [doc_id]})
        rows = (data or {}).get("rows", []) if status == 200 else []
        return "deleted" if rows and (rows[0].get("value") or {}).get("deleted") else "missing"

    def data_put(self, request: Request, inst: dict, doctype: str, id: str) -> Response:
        db = self._data_access(request, inst, doctype, "PUT", id)
        doc = self._json_body(request)
        doc.pop("_type", None)
        has_id, has_rev = "_id" in doc, "_rev" in doc
        if has_id != has_rev:
            raise data_typed_error(400, "Bad Request", "You must either provide an _id and _rev in document (update) "
                                                       "or neither (create with fixed id).")
        if has_id and doc["_id"] != id:
            raise data_typed_error(400, "Bad Request", "document _id doesnt match url")
        if has_id:
            status, current = self._couch("GET", Couch.doc(db, id), allow=(404,))
            if status == 404:
                raise data_couch_error(404, "not_found", self._missing_reason(db, id))
        else:
            self.stack.couch.create_db(db)
            doc["_id"] = id
        _, answer = self._couch("PUT", Couch.doc(db, id), doc)
        doc["_rev"] = answer["rev"]
        return json_response(200, {"ok": True, "id": id, "rev": doc["_rev"], "type": doctype,
                                   "data": {**doc, "_type": doctype}})

    def data_delete(self, request: Request, inst: dict, doctype: str, id: str) -> Response:
        db = self._data_access(request, inst, doctype, "DELETE", id)
        rev, match = request.param("rev"), request.header("If-Match")
        if match:
            match = match.strip('"')
        if not rev and not match:
            raise data_typed_error(400, "Bad Request", "delete without revision")
        if rev and match and rev != match:
            raise data_typed_error(400, "Bad Request", "If-Match Header and rev query parameters mismatch")
        status, current = self._couch("GET", Couch.doc(db, id), allow=(404,))
        if status == 200 and current.get("_rev") != (rev or match):
            # CouchDB answers a stale revision with a conflict (pouchdb-server says "missing").
            raise data_couch_error(409, "conflict", "Document update conflict.")
        _, answer = self._couch("DELETE", Couch.doc(db, id), query={"rev": rev or match})
        return json_response(200, {"ok": True, "id": id, "rev": answer["rev"], "type": doctype, "deleted": True})

    def data_all_docs(self, request: Request, inst: dict, doctype: str) -> Response:
        db = self._data_access(request, inst, doctype, "GET", whole=True)
        query = {k: v[0] for k, v in request.query.items() if k not in ("DesignDocs", "Fields", "bearer_token")}
        body = self._json_body(request) if request.method == "POST" else None
        status, data = self._couch(request.method, Couch.db(db) + "/_all_docs", body, query or None, allow=(404,))
        if status == 404:
            return json_response(200, {"total_rows": 0, "offset": 0, "rows": []})
        if request.param("DesignDocs") == "false":
            data["rows"] = [r for r in data["rows"] if not str(r.get("id", "")).startswith("_design/")]
        fields = [f for f in (request.param("Fields") or "").split(",") if f]
        if fields:
            for row in data["rows"]:
                if isinstance(row.get("doc"), dict):
                    row["doc"] = project(row["doc"], fields)
        return json_response(200, data)

    def data_normal_docs(self, request: Request, inst: dict, doctype: str) -> Response:
        db = self._data_access(request, inst, doctype, "GET", whole=True)
        limit = _limit(request.param("limit"))
        try:
            skip = max(0, int(request.param("skip") or 0))
        except ValueError:
            skip = 0
        docs = [d for d in self.stack.couch.all_docs(db) if not d["_id"].startswith("_design/")]
        after = _unbookmark(request.param("bookmark"))
        if after is not None:
            docs_after = [d for d in docs if d["_id"] > after]
        else:
            docs_after = docs
        page = docs_after[skip:skip + limit]
        bookmark = _bookmark(page[-1]["_id"]) if page else ""
        body: dict = {"rows": page, "total_rows": len(docs), "bookmark": bookmark}
        if request.param("execution_stats") == "true":
            body["execution_stats"] = {"total_docs_examined": len(docs), "results_returned": len(page)}
        return json_response(200, body)

    def data_index(self, request: Request, inst: dict, doctype: str) -> Response:
        db = self._data_access(request, inst, doctype, "GET", whole=True)
        body = self._json_body(request)
        self.stack.couch.create_db(db)
        _, data = self._couch("POST", Couch.db(db) + "/_index", body)
        return json_response(200, data)

    def data_find(self, request: Request, inst: dict, doctype: str) -> Response:
        db = self._data_access(request, inst, doctype, "GET", whole=True)
        body = self._json_body(request)
        limit = _limit(body.get("limit"))
        skip = int(body.get("skip") or 0) if str(body.get("skip") or "0").isdigit() else 0
        after = _unbookmark(body.pop("bookmark", None))
        if after is not None and after.startswith("skip:"):
            skip = int(after[5:])
        query = {**body, "limit": limit, "skip": skip}
        query.pop("execution_stats", None)
        if query.get("sort") and not self._sort_indexed(db, query["sort"]):
            raise data_couch_error(400, "no_index", "no matching index found, create an index")
        status, data = self._couch("POST", Couch.db(db) + "/_find", query, allow=(400, 404, 500))
        if status >= 400:
            data = data or {}
            if "index" in str(data.get("reason", "")).lower() or "sort" in str(data.get("reason", "")).lower():
                raise data_couch_error(400, "no_index", "no matching index found, create an index")
            raise data_couch_error(status, str(data.get("error", "error")), str(data.get("reason", "")))
        docs = data.get("docs", [])
        answer: dict = {"docs": docs, "limit": limit, "next": len(docs) >= limit,
                        "bookmark": _bookmark(f"skip:{skip + len(docs)}") if docs else "nil"}
        if body.get("execution_stats"):
            answer["execution_stats"] = {"total_docs_examined": len(docs), "results_returned": len(docs)}
        if data.get("warning"):
            answer["warning"] = data["warning"]
        return json_response(200, answer)

    def _sort_indexed(self, db: str, sort) -> bool:
        wanted = []
        for item in sort if isinstance(sort, list) else [sort]:
            wanted.append(next(iter(item)) if isinstance(item, dict) else str(item))
        status, data = self.stack.couch.request("GET", Couch.db(db) + "/_index")
        if status != 200:
            return False
        for index in data.get("indexes", []):
            fields = [next(iter(f)) for f in index.get("def", {}).get("fields", [])]
            if index.get("type") != "special" and fields[: len(wanted)] == wanted:
                return True
        return False

    # --- apps (cozy-stack.md §1.11)
    def _apps_allowed(self, request: Request, inst: dict, verb: str) -> None:
        perms = self.permissions(request, inst, "files")
        if not perms.allows(apps_mod.APPS, verb):
            raise self.forbidden(request, "files")

    def apps_list(self, request: Request, inst: dict) -> Response:
        self._apps_allowed(request, inst, "GET")
        docs = self.stack.apps(inst).list()
        return json_response(200, {"data": [apps_mod.resource(d) for d in docs], "meta": {"count": len(docs)}},
                             JSONAPI)

    def apps_show(self, request: Request, inst: dict, slug: str) -> Response:
        self._apps_allowed(request, inst, "GET")
        doc = self.stack.apps(inst).get(slug)
        if doc is None:
            raise StackError(404, "Not Found", "Application is not installed")
        return json_response(200, {"data": apps_mod.resource(doc)}, JSONAPI)

    def _app_answer(self, request: Request, doc: dict) -> Response:
        resource = apps_mod.resource(doc)
        if request.accepts("text/event-stream"):
            event = f"event: state\r\ndata: {json.dumps({'data': resource})}\r\n\r\n"
            return Response(200, event.encode(), "text/event-stream")
        return json_response(202, {"data": resource}, JSONAPI)

    def _app_error(self, request: Request, error: StackError) -> Response:
        if request.accepts("text/event-stream"):
            event = f"event: error\r\ndata: {json.dumps(error.detail)}\r\n\r\n"
            return Response(200, event.encode(), "text/event-stream")
        return jsonapi_error(error)

    def apps_install(self, request: Request, inst: dict, slug: str) -> Response:
        self._apps_allowed(request, inst, "POST")
        try:
            doc = self.stack.apps(inst).install(slug, request.param("Source") or None)
        except StackError as error:
            return self._app_error(request, error)
        return self._app_answer(request, doc)

    def apps_update(self, request: Request, inst: dict, slug: str) -> Response:
        self._apps_allowed(request, inst, "PUT")
        try:
            doc, _ = self.stack.apps(inst).update(slug, request.param("Source") or None)
        except StackError as error:
            return self._app_error(request, error)
        return self._app_answer(request, doc)

    # --- move (cozy-stack.md §7)
    def export_manifest(self, request: Request, inst: dict, mac: str) -> Response:
        doc = move.find_export_by_mac(self.stack, inst, mac)
        if doc is None:
            raise StackError(404, "Not Found", "export not found")
        return json_response(200, move.export_resource(doc), JSONAPI)

    def export_data(self, request: Request, inst: dict, mac: str) -> Response:
        doc = move.find_export_by_mac(self.stack, inst, mac)
        if doc is None:
            raise StackError(404, "Not Found", "export not found")
        return move._part_response(self.stack, inst, doc, request.param("cursor") or "")


def _limit(value) -> int:
    try:
        limit = int(value) if value is not None and value != "" else DATA_LIMIT
    except (TypeError, ValueError):
        return DATA_LIMIT
    return DATA_LIMIT if limit <= 0 or limit > DATA_LIMIT_MAX else limit


def _bookmark(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _unbookmark(value) -> str | None:
    if not value or value == "nil":
        return None
    try:
        return base64.urlsafe_b64decode(str(value) + "=" * (-len(str(value)) % 4)).decode()
    except ValueError:
        return None


def project(doc: dict, fields: list[str]) -> dict:
    out = {k: doc[k] for k in ("_id", "_rev") if k in doc}
    for field in fields:
        node, target, parts = doc, out, field.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                break
            if i == len(parts) - 1:
                target[part] = node[part]
            else:
                node = node[part]
                target = target.setdefault(part, {})
    return out


_ = TRASH
