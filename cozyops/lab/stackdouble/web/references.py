"""References between files and documents (cozy-stack's web/files/references.go and
referencedby.go; files-data §2)."""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

from ..admin import JSONAPI
from ..httpd import Request, Response, json_response
from ..instances import StackError
from ..vfs import FILES, file_resource
from .errors import data_typed_error
from .middlewares import Permissions

REFS_PAGE, REFS_PAGE_MAX = 100, 1000


class References:
    """Mixin of PublicApp: /files/:id/relationships/referenced_by and
    /data/:doctype/:id/relationships/references."""

    ROUTES = [
        ("POST", "/files/:id/relationships/referenced_by", "add_referenced_by"),
        ("DELETE", "/files/:id/relationships/referenced_by", "remove_referenced_by"),
        ("GET", "/data/:doctype/:id/relationships/references", "refs_list"),
        ("POST", "/data/:doctype/:id/relationships/references", "refs_add"),
        ("DELETE", "/data/:doctype/:id/relationships/references", "refs_remove"),
    ]

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
        # ListReferencesHandler: the FilesReferencedByView (key [doctype, id]) or, with
        # sort=datetime, ReferencedBySortedByDatetimeView (key [doctype, id, datetime]).
        sort = request.param("sort") or "id"
        if sort not in ("id", "-id", "datetime", "-datetime"):
            raise data_typed_error(400, "Bad Request", "Invalid sort parameter")
        by_date = sort.lstrip("-") == "datetime"

        def key(d: dict) -> list:
            if by_date:
                when = (d.get("cozyMetadata") or {}).get("updatedAt") or d.get("updated_at") or ""
                return [doctype, id, when]
            return [doctype, id]

        docs.sort(key=lambda d: (key(d), d["_id"]), reverse=sort.startswith("-"))
        # jsonapi.ExtractPaginationCursor
        limit_text = request.param("page[limit]")
        limit = REFS_PAGE
        if limit_text:
            try:
                limit = int(limit_text)
            except ValueError:
                raise data_typed_error(400, "Bad Request", "page limit is not a number") from None
        limit = min(limit, REFS_PAGE_MAX)
        start, skipping = 0, False
        cursor = request.param("page[cursor]")
        if cursor:
            try:
                parts = json.loads(cursor)
            except ValueError:
                raise data_typed_error(400, "Bad Request", f"bad json cursor {cursor}") from None
            if not isinstance(parts, list) or len(parts) != 2:
                raise data_typed_error(400, "Bad Request", f"bad cursor length {cursor}")
            if not isinstance(parts[1], str):
                raise data_typed_error(400, "Bad Request", f"bad cursor id {cursor}")
            wanted = (parts[0], parts[1])
            start = next((i for i, d in enumerate(docs) if (key(d), d["_id"]) == wanted), len(docs))
        elif request.param("page[skip]"):
            try:
                start, skipping = max(0, int(request.param("page[skip]"))), True
            except ValueError:
                raise data_typed_error(400, "Bad Request", "page skip is not a number") from None
        page = docs[start:start + limit]
        body: dict = {"data": [{"id": d["_id"], "type": FILES} for d in page], "meta": {"count": len(docs)}}
        if start + limit < len(docs):
            # PaginationCursorToParams, encoded as url.Values.Encode (keys sorted, brackets escaped)
            path = f"/data/{doctype}/{quote(id, safe='')}/relationships/references"
            if skipping:
                params = [("page[limit]", str(limit)), ("page[skip]", str(start + limit))]
            else:
                nxt = docs[start + limit]
                params = [("page[cursor]", json.dumps([key(nxt), nxt["_id"]], separators=(",", ":"))),
                          ("page[limit]", str(limit))]
            body["links"] = {"next": path + "?" + urlencode(params)}
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

