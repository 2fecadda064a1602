"""Files (cozy-stack's web/files/files.go; files-data §1): creation, metadata, content, downloads,
trash, copies, Mango queries and the changes feed of ``io.cozy.files``."""

from __future__ import annotations

import json
import posixpath
import secrets
import time
from urllib.parse import quote, urlencode

from ..admin import JSONAPI
from ..couch import Couch
from ..httpd import Request, Response, json_response
from ..instances import StackError
from ..vfs import FILES, ROOT, TRASH, file_resource, parse_date_header, parse_tags, parse_time
from .middlewares import Permissions

FILES_PAGE, FILES_PAGE_MAX = 30, 1000
# web/files FileDownload: a download link's secret maps to the file's path in model/vfs/store.go's
# store for storeTTL (10 minutes); FileDownloadHandler then reads the file at that path.
DOWNLOAD_TTL = 600.0


class Files:
    """Mixin of PublicApp: the /files routes."""

    ROUTES = [
        ("GET", "/files/metadata", "file_by_path"),
        ("GET", "/files/download", "download_by_path"),
        ("GET", "/files/download/:id", "download"),
        ("POST", "/files/_find", "files_find"),
        ("POST", "/files/_all_docs", "files_all_docs"),
        ("GET", "/files/_changes", "files_changes"),
        ("POST", "/files/downloads", "create_download"),
        ("GET", "/files/downloads/:secret/:name", "download_by_secret"),
        ("GET", "/files/trash", "list_trash"),
        ("DELETE", "/files/trash", "clear_trash"),
        ("POST", "/files/trash/:id", "restore"),
        ("DELETE", "/files/trash/:id", "destroy"),
        ("POST", "/files/", "create_in_root"),
        ("POST", "/files/:id/copy", "copy"),
        ("POST", "/files/:dir-id", "create"),
        ("PUT", "/files/:id", "overwrite"),
        ("PATCH", "/files/:id", "patch_file"),
        ("DELETE", "/files/:id", "trash"),
        ("GET", "/files/:id/relationships/contents", "dir_contents"),
        ("GET", "/files/:id", "show_file"),
    ]

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
        skip = request.param("page[skip]")
        start = 0
        if cursor:
            # jsonapi.ExtractPaginationCursor: [next key, next doc id]; the key of a child is
            # [dir_id, type, name] (the dir-children index of cozy-stack's VFS).
            try:
                key, next_id = json.loads(cursor)
                after = (key[1], key[2].encode(), next_id)
            except (ValueError, IndexError, TypeError, AttributeError):
                raise StackError(400, "Bad Request", f"bad json cursor {cursor}") from None
            start = next((i for i, c in enumerate(children)
                          if (c.get("type", ""), c.get("name", "").encode(), c["_id"]) >= after), len(children))
        elif skip:
            try:
                start = max(0, int(skip))
            except ValueError:
                raise StackError(400, "Bad Request", "page skip is not a number") from None
        page = children[start:start + limit]
        contents: dict = {"meta": {"count": len(children)},
                          "links": {"self": f"/files/{doc['_id']}/relationships/contents"},
                          "data": [{"type": FILES, "id": c["_id"]} for c in page]}
        body: dict = {"data": resource, "included": [file_resource(c) for c in page]}
        if start + limit < len(children):
            # DirData: PaginationCursorToParams, encoded as url.Values.Encode (keys sorted,
            # brackets escaped); a SkipCursor gives page[limit] and page[skip].
            if skip and not cursor:
                params = urlencode([("page[limit]", str(limit)), ("page[skip]", str(start + limit))])
            else:
                nxt = children[start + limit]
                key = [doc["_id"], nxt.get("type"), nxt.get("name")]
                cursor_text = json.dumps([key, nxt["_id"]], separators=(",", ":"), ensure_ascii=False)
                params = urlencode([("page[cursor]", cursor_text), ("page[limit]", str(limit))])
            contents["links"]["next"] = f"/files/{doc['_id']}/relationships/contents?{params}"
            body["links"] = {"next": f"/files/{doc['_id']}?{params}"}
        resource["relationships"]["contents"] = contents
        resource["relationships"]["not_synchronized_on"] = {
            "links": {"self": f"/files/{doc['_id']}/relationships/not_synchronized_on"},
            "data": doc.get("not_synchronized_on") or [],
        }
        return body

    def dir_contents(self, request: Request, inst: dict, id: str) -> Response:
        """GetChildrenHandler (dirDataList): the page of children as a list, its count in meta."""
        perms = self.permissions(request, inst, "files")
        vfs = self.stack.vfs(inst)
        doc = vfs.require(id)
        if doc.get("type") != "directory":
            raise StackError(404, "Not Found", "file does not exist")
        self._file_allowed(request, vfs, perms, "GET", doc)
        body = self._dir_document(request, vfs, doc)
        contents = body["data"]["relationships"]["contents"]
        answer: dict = {"data": body["included"], "meta": {"count": contents["meta"]["count"]}}
        if "next" in contents["links"]:
            answer["links"] = {"next": contents["links"]["next"].replace(f"/files/{id}/relationships/contents",
                                                                         request.raw_path)}
        return json_response(200, answer, JSONAPI)

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
        return self._send_file(request, vfs, doc)

    def _send_file(self, request: Request, vfs, doc: dict | None) -> Response:
        if doc is None or doc.get("type") != "file":
            raise StackError(404, "Not Found", "file does not exist")
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


    # --- trash (web/files/files.go Trash, Restore, DestroyFileHandler, ClearTrashHandler, ReadTrashFilesHandler)
    def _check_if_match(self, request: Request, doc: dict) -> None:
        """CheckIfMatch: an If-Match header must name the current revision."""
        match = request.header("If-Match")
        if match and match.strip('"') != doc.get("_rev"):
            raise StackError(412, "Precondition Failed", "Invalid revision")

    def trash(self, request: Request, inst: dict, id: str) -> Response:
        perms = self.permissions(request, inst, "files")
        vfs = self.stack.vfs(inst)
        doc = vfs.require(id)
        self._file_allowed(request, vfs, perms, "PATCH", doc)
        self._check_if_match(request, doc)
        return json_response(200, {"data": file_resource(vfs.trash(doc))}, JSONAPI)

    def restore(self, request: Request, inst: dict, id: str) -> Response:
        perms = self.permissions(request, inst, "files")
        vfs = self.stack.vfs(inst)
        doc = vfs.require(id)
        self._file_allowed(request, vfs, perms, "PATCH", doc)
        return json_response(200, {"data": file_resource(vfs.restore(doc))}, JSONAPI)

    def destroy(self, request: Request, inst: dict, id: str) -> Response:
        perms = self.permissions(request, inst, "files")
        vfs = self.stack.vfs(inst)
        doc = vfs.require(id)
        self._file_allowed(request, vfs, perms, "DELETE", doc)
        self._check_if_match(request, doc)
        if id in (ROOT, TRASH):
            raise StackError(412, "Precondition Failed", "Forbidden document move", {"parameter": "dir-id"})
        vfs.destroy(doc)  # DestroyFile / DestroyDirAndContent: in the trash or not
        return Response(204)

    def clear_trash(self, request: Request, inst: dict) -> Response:
        perms = self.permissions(request, inst, "files")
        vfs = self.stack.vfs(inst)
        self._file_allowed(request, vfs, perms, "DELETE", vfs.require(TRASH))
        vfs.clear_trash()
        return Response(204)

    def list_trash(self, request: Request, inst: dict) -> Response:
        perms = self.permissions(request, inst, "files")
        vfs = self.stack.vfs(inst)
        self._file_allowed(request, vfs, perms, "GET", vfs.require(TRASH))
        body = self._dir_document(request, vfs, vfs.require(TRASH))
        return json_response(200, {"data": body["included"], "meta": {"count": len(vfs.children(TRASH))},
                                   **({"links": body["links"]} if "links" in body else {})}, JSONAPI)

    # --- metadata and content (ModifyMetadataByIDHandler, OverwriteFileContentHandler, FileCopyHandler)
    def patch_file(self, request: Request, inst: dict, id: str) -> Response:
        perms = self.permissions(request, inst, "files")
        vfs = self.stack.vfs(inst)
        doc = vfs.require(id)
        self._file_allowed(request, vfs, perms, "PATCH", doc)
        self._check_if_match(request, doc)
        try:
            attrs = request.json()["data"]["attributes"]
            if not isinstance(attrs, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise StackError(400, "Bad Request", "JSON input is malformed or is missing mandatory fields") from None
        if id in (ROOT, TRASH):
            # ModifyDirMetadata: os.ErrInvalid, left unwrapped by WrapVfsError (500).
            raise StackError(500, "Unqualified error", "invalid argument")
        extra: dict = {}
        if "tags" in attrs:
            extra["tags"] = parse_tags(",".join(attrs.get("tags") or []))
        for key in ("executable", "class", "mime"):
            if key in attrs and doc.get("type") == "file":
                extra[key] = attrs[key]
        if attrs.get("updated_at"):
            extra["updated_at"] = parse_time(attrs["updated_at"]) or doc.get("updated_at")
        dir_id = attrs.get("dir_id") or doc["dir_id"]
        name = attrs.get("name") or doc["name"]
        if dir_id != doc["dir_id"]:
            self._file_allowed(request, vfs, perms, "PATCH", vfs.require(dir_id))
        from ..vfs import check_name

        check_name(name)
        moved = vfs.move(doc, dir_id, name, extra)
        if "updated_at" in extra:
            moved["updated_at"] = extra["updated_at"]
            moved = vfs.put(moved)
        return json_response(200, {"data": file_resource(moved)}, JSONAPI)

    def overwrite(self, request: Request, inst: dict, id: str) -> Response:
        perms = self.permissions(request, inst, "files")
        vfs = self.stack.vfs(inst)
        doc = vfs.require(id)
        if doc.get("type") != "file":
            raise StackError(404, "Not Found", "file does not exist")
        self._file_allowed(request, vfs, perms, "PUT", doc)
        self._check_if_match(request, doc)
        quota = int(inst.get("disk_quota") or 0)
        return json_response(200, {"data": file_resource(vfs.overwrite(doc, request, quota))}, JSONAPI)

    def copy(self, request: Request, inst: dict, id: str) -> Response:
        """CopyFile: ``<base> (copy)<ext>`` (the "File copy Suffix" of en.po), ``(2)``… on a conflict."""
        perms = self.permissions(request, inst, "files")
        vfs = self.stack.vfs(inst)
        doc = vfs.require(id)
        if doc.get("type") != "file":
            raise StackError(404, "Not Found", "file does not exist")
        dir_id = request.param("DirID") or doc["dir_id"]
        name = request.param("Name") or _copy_name(doc["name"])
        self._file_allowed(request, vfs, perms, "POST", vfs.require(dir_id))
        return json_response(201, {"data": file_resource(vfs.copy_file(doc, dir_id, name))}, JSONAPI)

    # --- downloads by secret (FileDownload, FileDownloadHandler)
    def create_download(self, request: Request, inst: dict) -> Response:
        perms = self.permissions(request, inst, "files")
        vfs = self.stack.vfs(inst)
        doc = None
        if request.param("Path"):
            doc = vfs.by_path(request.param("Path"))
        elif request.param("Id"):
            doc = vfs.get(request.param("Id"))
        if doc is None or doc.get("type") != "file":
            raise StackError(404, "Not Found", "file does not exist")
        self._file_allowed(request, vfs, perms, "GET", doc)
        secret = secrets.token_hex(16)
        store = self.__dict__.setdefault("_download_secrets", {})
        now = time.monotonic()
        for key in [k for k, (_, _, at) in list(store.items()) if now - at > DOWNLOAD_TTL]:
            store.pop(key, None)
        store[secret] = (inst["domain"], vfs.path_of(doc), now)
        filename = request.param("Filename") or doc["name"]
        # FileData(…, links): the link is the document's top-level links, the file's own stay.
        return json_response(200, {"data": file_resource(doc),
                                   "links": {"related": f"/files/downloads/{secret}/{filename}"}}, JSONAPI)

    def download_by_secret(self, request: Request, inst: dict, secret: str, name: str) -> Response:
        entry = self.__dict__.get("_download_secrets", {}).get(secret)
        if entry is None or entry[0] != inst["domain"] or time.monotonic() - entry[2] > DOWNLOAD_TTL:
            raise StackError(404, "Not Found", "file does not exist")
        vfs = self.stack.vfs(inst)
        return self._send_file(request, vfs, vfs.by_path(entry[1]))

    # --- queries (FindFilesMango, GetAllDocs, ChangesFeedForFiles)
    def _whole_files(self, request: Request, inst: dict) -> None:
        """middlewares.AllowWholeType(GET, io.cozy.files)."""
        perms = self.permissions(request, inst, "files")
        if not perms.allows(FILES, "GET", whole=True):
            raise self.forbidden(request, "files")

    def files_find(self, request: Request, inst: dict) -> Response:
        try:
            query = request.json()
            if not isinstance(query, dict):
                raise ValueError("the body is not an object")
        except (ValueError, UnicodeDecodeError) as error:
            raise StackError(400, "Bad Request", str(error)) from None
        self._whole_files(request, inst)
        limit = query.get("limit")
        if not isinstance(limit, (int, float)) or limit > 1000:
            limit = 100
        if (request.param("page[limit]") or "").isdigit():
            limit = int(request.param("page[limit]"))
        query["limit"] = int(limit)
        skip = int(query.get("skip") or 0) if isinstance(query.get("skip"), (int, float)) else 0
        if (request.param("page[skip]") or "").isdigit():
            skip = int(request.param("page[skip]"))
        query["skip"] = skip
        query.pop("bookmark", None)
        vfs = self.stack.vfs(inst)
        status, data = self.stack.couch.request("POST", Couch.db(vfs.db) + "/_find", query)
        if status >= 400 and query.get("use_index"):
            # CouchDB answers a use_index naming no index with the results and a warning;
            # pouchdb-server refuses the query: it runs again without use_index.
            query.pop("use_index")
            status, data = self.stack.couch.request("POST", Couch.db(vfs.db) + "/_find", query)
        if status >= 400:
            data = data if isinstance(data, dict) else {}
            raise StackError(status, "Bad Request" if status == 400 else "Error",
                             str(data.get("reason") or data.get("message") or data.get("error")))
        docs = [d for d in data.get("docs", []) if not str(d.get("_id", "")).startswith("_design/")]
        total = 2**31 - 2 if len(docs) >= limit else skip + len(docs)
        out = []
        for doc in docs:
            resource = file_resource(doc)
            if doc.get("type") == "file" and doc.get("dir_id"):
                try:
                    resource["attributes"]["path"] = vfs.path_of(doc)
                except StackError:
                    pass
            out.append(resource)
        body: dict = {"data": out, "meta": {"count": total}}
        if len(docs) >= limit:
            body["links"] = {"next": f"/files/_find?page[skip]={skip + len(docs)}"}
        return json_response(200, body, JSONAPI)

    def files_all_docs(self, request: Request, inst: dict) -> Response:
        self._whole_files(request, inst)
        try:
            keys = request.json().get("keys") or []
        except (ValueError, AttributeError, UnicodeDecodeError) as error:
            raise StackError(400, "Bad Request", str(error)) from None
        vfs = self.stack.vfs(inst)
        status, data = self.stack.couch.request("POST", Couch.db(vfs.db) + "/_all_docs",
                                                {"keys": keys}, {"include_docs": True})
        out = []
        for row in (data or {}).get("rows", []) if status == 200 else []:
            doc = row.get("doc")
            if not isinstance(doc, dict) or doc.get("_id") == TRASH:
                continue
            resource = file_resource(doc)
            if doc.get("type") == "file":
                resource["attributes"]["path"] = vfs.path_of(doc)
            out.append(resource)
        return json_response(200, {"data": out, "meta": {"count": len(out)}}, JSONAPI)

    def files_changes(self, request: Request, inst: dict) -> Response:
        self._whole_files(request, inst)
        allowed = {"since", "limit", "include_docs", "fields", "include_file_path", "skip_deleted",
                   "skip_trashed", "bearer_token"}
        for key in request.query:
            if key not in allowed:
                raise StackError(400, "Bad Request", f"Unsupported query parameter '{key}'")
        query: dict = {}
        if request.param("since"):
            query["since"] = request.param("since")
        if request.param("limit"):
            try:
                query["limit"] = min(int(request.param("limit")), 10000)
            except ValueError:
                raise StackError(400, "Bad Request", f"Invalid limit value '{request.param('limit')}'") from None
        include_docs = request.param("include_docs") == "true"
        if include_docs:
            query["include_docs"] = True
        vfs = self.stack.vfs(inst)
        status, data = self.stack.couch.request("GET", Couch.db(vfs.db) + "/_changes", query=query or None)
        if status != 200:
            raise StackError(status, "Error", str((data or {}).get("reason")))
        results = [r for r in data.get("results", []) if not str(r.get("id", "")).startswith("_design/")]
        if request.param("skip_deleted") == "true":
            results = [r for r in results if not r.get("deleted")]
        if request.param("skip_trashed") == "true":
            results = [r for r in results if not (r.get("doc") or {}).get("trashed")]
        return json_response(200, {"last_seq": data.get("last_seq"), "pending": data.get("pending", 0),
                                   "results": results})


def _copy_name(name: str) -> str:
    dot = name.rfind(".")
    base, ext = (name[:dot], name[dot:]) if dot > 0 else (name, "")
    return f"{base} (copy){ext}"
