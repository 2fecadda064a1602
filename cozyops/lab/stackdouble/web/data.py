"""Documents of any doctype (cozy-stack's web/data/data.go and web/data/mango.go; files-data §3)."""

from __future__ import annotations

import base64
import uuid

from .. import tokens
from ..couch import Couch, couchdb_reason, db_name
from ..httpd import Request, Response, json_response
from .errors import data_couch_error, data_echo_error, data_typed_error

# CouchDB's reason for a database that does not exist.
NO_DATABASE = "Database does not exist."
# files-data §3: reserved doctypes.
READ_ONLY = {"io.cozy.files", "io.cozy.files.versions", "io.cozy.jobs", "io.cozy.triggers", "io.cozy.apps",
             "io.cozy.konnectors", "io.cozy.notifications", "io.cozy.remote.requests", "io.cozy.sessions.logins",
             "io.cozy.notes.steps", "io.cozy.notes.images", "com.bitwarden.contacts"}
HIDDEN = {"io.cozy.permissions", "io.cozy.sharings", "io.cozy.shared", "io.cozy.sessions", "io.cozy.oauth.clients",
          "io.cozy.oauth.access_codes", "io.cozy.files.archives", "io.cozy.files.sizes", "io.cozy.files.thumbnails",
          "io.cozy.jobs.events", "io.cozy.triggers.state", "io.cozy.remote.secrets", "instances",
          "io.cozy.settings.instance", "io.cozy.sharings.answers", "io.cozy.exports"}


DATA_LIMIT, DATA_LIMIT_MAX = 100, 1000


def hidden(doctype: str) -> bool:
    return doctype in HIDDEN or doctype.startswith(("io.cozy.sharings.", "io.cozy.oauth."))



class Data:
    """Mixin of PublicApp: the /data routes."""

    ROUTES = [
        ("POST", "/data/:doctype/", "data_create"),
        ("GET|POST", "/data/:doctype/_all_docs", "data_all_docs"),
        ("GET", "/data/:doctype/_normal_docs", "data_normal_docs"),
        ("POST", "/data/:doctype/_index", "data_index"),
        ("POST", "/data/:doctype/_find", "data_find"),
        ("GET", "/data/:doctype/:id", "data_get"),
        ("PUT", "/data/:doctype/:id", "data_put"),
        ("DELETE", "/data/:doctype/:id", "data_delete"),
    ]

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
            if request.param("Fields") is None and request.param("DesignDocs") is None:
                # allDocs proxies CouchDB: a database never written answers CouchDB's 404.
                return json_response(404, {"error": "not_found", "reason": NO_DATABASE})
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
        if not self.stack.couch.db_exists(db):
            # couchdb.NormalDocs: CouchDB's _find on a database never written.
            raise data_couch_error(404, "not_found", NO_DATABASE)
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
        if status == 404:
            raise data_couch_error(404, "not_found", NO_DATABASE)
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




CHANGES_PARAMS = {"feed", "style", "since", "limit", "timeout", "include_docs", "heartbeat", "_nonce",
                  "seq_interval", "descending", "bearer_token"}


class Replication:
    """Mixin of PublicApp: web/data/replication.go's routes (changesFeed, bulkDocs) and
    web/data/data.go getDesignDocs."""

    ROUTES = [
        ("GET", "/data/", "data_welcome"),
        ("GET", "/data/_all_doctypes", "data_all_doctypes"),
        ("GET", "/data/:doctype/", "data_db_status"),
        ("PUT", "/data/:doctype/", "data_create_db"),
        ("DELETE", "/data/:doctype/", "data_delete_db"),
        ("GET", "/data/:doctype/_design_docs", "data_design_docs"),
        ("GET", "/data/:doctype/_design/:ddoc", "data_design_doc"),
        ("DELETE", "/data/:doctype/_design/:ddoc", "data_delete_design_doc"),
        ("POST", "/data/:doctype/_design/:ddoc/copy", "data_copy_design_doc"),
        ("GET|POST", "/data/:doctype/_changes", "data_changes"),
        ("POST", "/data/:doctype/_bulk_docs", "data_bulk_docs"),
    ]

    def data_welcome(self, request: Request, inst: dict) -> Response:
        """dataAPIWelcome: no permission asked."""
        return json_response(200, {"message": "welcome to a cozy API"})

    def data_all_doctypes(self, request: Request, inst: dict) -> Response:
        """allDoctypes: AllowWholeType(GET, io.cozy.doctypes); the readable doctypes (null when none)."""
        perms = self.permissions(request, inst, "data")
        if not perms.allows("io.cozy.doctypes", "GET", whole=True):
            raise data_echo_error(403, "Forbidden")
        found = sorted(doctype for _, doctype in self.stack.couch.instance_dbs(inst["prefix"])
                       if not hidden(doctype))
        return json_response(200, found or None)

    def _proxy(self, method: str, path: str, query=None) -> Response:
        """web/data proxy: CouchDB's status and body as they are."""
        status, data = self.stack.couch.request(method, path, query=query)
        return json_response(status, data)

    def data_db_status(self, request: Request, inst: dict, doctype: str) -> Response:
        """dbStatus (replication.go): CouchDB's database information."""
        db = self._data_access(request, inst, doctype, "GET", whole=True)
        status, data = self.stack.couch.request("GET", Couch.db(db))
        if status >= 400:
            raise data_couch_error(status, str(data.get("error")), couchdb_reason(str(data.get("reason"))))
        return json_response(200, data)

    def data_create_db(self, request: Request, inst: dict, doctype: str) -> Response:
        """createDB (replication.go): AllowWholeType(POST), CheckWritable, then CouchDB's PUT."""
        db = self._data_access(request, inst, doctype, "POST", whole=True)
        return self._proxy("PUT", Couch.db(db))

    def data_delete_db(self, request: Request, inst: dict, doctype: str) -> Response:
        """DeleteDatabase: CheckWritable, AllowWholeType(DELETE); ``{"ok": true, "deleted": true}``."""
        db = self._data_access(request, inst, doctype, "DELETE", whole=True)
        status, data = self.stack.couch.request("DELETE", Couch.db(db))
        if status >= 400:
            raise data_couch_error(status, str(data.get("error")), couchdb_reason(str(data.get("reason"))))
        return json_response(200, {"ok": True, "deleted": True})

    def data_design_doc(self, request: Request, inst: dict, doctype: str, ddoc: str) -> Response:
        """getDesignDoc: proxied to CouchDB."""
        db = self._data_access(request, inst, doctype, "GET", whole=True)
        return self._proxy("GET", Couch.doc(db, "_design/" + ddoc))

    def data_delete_design_doc(self, request: Request, inst: dict, doctype: str, ddoc: str) -> Response:
        """deleteDesignDoc: a rev is required (400 ``You must pass a rev param``), then proxied."""
        db = self._data_access(request, inst, doctype, "GET", whole=True)
        if not request.param("rev"):
            return json_response(400, {"error": "You must pass a rev param"})
        return self._proxy("DELETE", Couch.doc(db, "_design/" + ddoc), {"rev": request.param("rev")})

    def data_copy_design_doc(self, request: Request, inst: dict, doctype: str, ddoc: str) -> Response:
        """copyDesignDoc: a Destination header is required (400, a JSON string); CouchDB's COPY
        (pouchdb-server has none: read, then written under the destination); 201."""
        destination = request.header("Destination") or ""
        if not destination:
            return json_response(400, "You must set a Destination header")
        db = self._data_access(request, inst, doctype, "GET", whole=True)
        status, source = self.stack.couch.request("GET", Couch.doc(db, "_design/" + ddoc))
        if status >= 400:
            raise data_couch_error(status, str(source.get("error")), couchdb_reason(str(source.get("reason"))))
        target, _, rev = destination.partition("?rev=")
        copy = {k: v for k, v in source.items() if k not in ("_id", "_rev")}
        if rev:
            copy["_rev"] = rev
        status, data = self.stack.couch.request("PUT", Couch.doc(db, target), copy)
        if status >= 400:
            raise data_couch_error(status, str(data.get("error")), couchdb_reason(str(data.get("reason"))))
        return json_response(201, data)

    def data_design_docs(self, request: Request, inst: dict, doctype: str) -> Response:
        """getDesignDocs proxies CouchDB's ``_design_docs`` (pouchdb-server has none: the same
        rows from ``_all_docs`` between ``_design/`` and ``_design0``)."""
        db = self._data_access(request, inst, doctype, "GET", whole=True)
        query = {"startkey": '"_design/"', "endkey": '"_design0"'}
        if request.param("include_docs") == "true":
            query["include_docs"] = "true"
        status, data = self.stack.couch.request("GET", Couch.db(db) + "/_all_docs", query=query)
        if status == 404:
            raise data_couch_error(404, "not_found", NO_DATABASE)
        if status >= 400:
            raise data_couch_error(status, str(data.get("error")), couchdb_reason(str(data.get("reason"))))
        return json_response(200, {"total_rows": len(data["rows"]), "offset": 0, "rows": data["rows"]})

    def data_changes(self, request: Request, inst: dict, doctype: str) -> Response:
        for key in request.query:
            if key == "filter" and request.method == "POST":
                continue
            if key not in CHANGES_PARAMS:
                raise data_typed_error(400, "Bad Request", f"Unsupported query parameter '{key}'")
        if request.param("limit") and not request.param("limit").lstrip("-").isdigit():
            raise data_typed_error(400, "Bad Request", f"Invalid limit value '{request.param('limit')}': "
                                                       f"strconv.Atoi: parsing {request.param('limit')!r}: "
                                                       "invalid syntax")
        db = self._data_access(request, inst, doctype, "GET", whole=True)
        query = {k: request.param(k) for k in ("since", "limit", "include_docs", "descending", "style")
                 if request.param(k)}
        status, data = self.stack.couch.request("GET", Couch.db(db) + "/_changes", query=query or None)
        if status == 404:
            # couchdb.EnsureDBExist is not called here: an unknown database answers CouchDB's 404.
            raise data_couch_error(404, "not_found", NO_DATABASE)
        if status >= 400:
            raise data_couch_error(status, str(data.get("error")), couchdb_reason(str(data.get("reason"))))
        return json_response(200, data)

    def data_bulk_docs(self, request: Request, inst: dict, doctype: str) -> Response:
        """bulkDocs: AllowWholeType(POST), CheckWritable, EnsureDBExist, then CouchDB's answer as is."""
        db = self._data_access(request, inst, doctype, "POST", whole=True)
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError) as error:
            return json_response(400, {"error": str(error)})
        self.stack.couch.create_db(db)
        status, data = self.stack.couch.request("POST", Couch.db(db) + "/_bulk_docs", body)
        return json_response(status, in_request_order(body, data))


def in_request_order(body: object, results: object) -> object:
    """CouchDB answers _bulk_docs one result per document, in the request's order; pouchdb-server
    (CouchDB's stand-in) sometimes answers them in another. Put them back when every document names
    its _id (a document without one cannot be matched, and the answer is left as it came)."""
    docs = body.get("docs") if isinstance(body, dict) else None
    if not isinstance(docs, list) or not isinstance(results, list) or len(docs) != len(results):
        return results
    ids = [doc.get("_id") if isinstance(doc, dict) else None for doc in docs]
    if None in ids or len(set(ids)) != len(ids) or {r.get("id") for r in results if isinstance(r, dict)} != set(ids):
        return results
    by_id = {r["id"]: r for r in results}
    return [by_id[i] for i in ids]
