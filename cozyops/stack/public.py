"""The public API client (cozy-stack's port 8080, ``Host: <instance>``): files, references, data.

Written from ../shared/reference/cozy-stack-files-data-api.md. Uploads always send Content-MD5,
so a corrupted transfer is refused by the stack (412) instead of stored.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cozyops.stack.http import Http, error_from

ROOT_ID = "io.cozy.files.root-dir"
TRASH_ID = "io.cozy.files.trash-dir"
JSONAPI = "application/vnd.api+json"


@dataclass(frozen=True)
class FileDoc:
    id: str
    rev: str
    attributes: dict[str, Any] = field(repr=False)
    relationships: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def type(self) -> str:
        return self.attributes["type"]

    @property
    def name(self) -> str:
        return self.attributes.get("name", "")

    @property
    def dir_id(self) -> str:
        return self.attributes.get("dir_id", "")

    @property
    def size(self) -> int:
        return int(self.attributes.get("size") or 0)  # a string in the API

    @property
    def md5sum(self) -> str:
        return self.attributes.get("md5sum", "")

    @property
    def is_dir(self) -> bool:
        return self.type == "directory"

    @property
    def referenced_by(self) -> list[dict]:
        return ((self.relationships.get("referenced_by") or {}).get("data")) or []

    @classmethod
    def from_resource(cls, resource: dict) -> FileDoc:
        return cls(
            resource["id"],
            resource.get("meta", {}).get("rev", ""),
            dict(resource.get("attributes", {})),
            dict(resource.get("relationships", {})),
        )


def md5_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _file_params(name: str, tags: list[str] | None, created_at: str, updated_at: str) -> dict[str, str]:
    params = {"Type": "file", "Name": name}
    if tags:
        params["Tags"] = ",".join(tags)
    if created_at:
        params["CreatedAt"] = created_at
    if updated_at:
        params["UpdatedAt"] = updated_at
    return params


class PublicClient:
    def __init__(self, base_url: str, domain: str, token: str = "", timeout: float = 300.0) -> None:
        self.domain = domain
        self.http = Http(base_url, host=domain, timeout=timeout)
        self.set_token(token)

    def set_token(self, token: str) -> None:
        """A new token (CLI tokens last 30 minutes: long work renews them)."""
        if token:
            self.http.session.headers["Authorization"] = f"Bearer {token}"
        else:
            self.http.session.headers.pop("Authorization", None)

    def _file(self, method: str, path: str, where: str, expect: tuple[int, ...] = (200,), **kwargs: Any) -> FileDoc:
        response = self.http.request(method, path, where, expect, **kwargs)
        return FileDoc.from_resource(response.json()["data"])

    # -- server ------------------------------------------------------------------------------

    def version(self) -> dict:
        return self.http.request("GET", "/version", "version").json()

    def status(self) -> dict:
        return self.http.request("GET", "/status", "status").json()

    # -- files -------------------------------------------------------------------------------

    def mkdir(self, parent_id: str, name: str, *, tags: list[str] | None = None, created_at: str = "",
              updated_at: str = "") -> FileDoc:
        params = {"Type": "directory", "Name": name}
        if tags:
            params["Tags"] = ",".join(tags)
        if created_at:
            params["CreatedAt"] = params["UpdatedAt"] = created_at
        if updated_at:
            params["UpdatedAt"] = updated_at
        return self._file("POST", f"/files/{parent_id}", f"mkdir {name}", (201,), params=params)

    def mkdir_p(self, path: str) -> FileDoc:
        """mkdir -p: idempotent, returns the directory (201 even when it existed)."""
        params = {"Type": "directory", "Path": path, "Recursive": "true"}
        return self._file("POST", "/files/", f"mkdir -p {path}", (201, 200), params=params)

    def upload(
        self,
        dir_id: str,
        name: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        tags: list[str] | None = None,
        created_at: str = "",
        updated_at: str = "",
    ) -> FileDoc:
        params = _file_params(name, tags, created_at, updated_at)
        headers = {"Content-MD5": md5_base64(data), "Content-Type": content_type}
        return self._file("POST", f"/files/{dir_id}", f"upload {name}", (201,), params=params, data=data,
                          headers=headers)

    def upload_stream(
        self, dir_id: str, name: str, stream: Any, size: int, md5: str, *, content_type: str = "",
        tags: list[str] | None = None, created_at: str = "", updated_at: str = "",
    ) -> FileDoc:
        """Upload from a file object (read once, never held whole), with its known size and base64 MD5."""
        params = _file_params(name, tags, created_at, updated_at)
        headers = {"Content-MD5": md5, "Content-Length": str(size)}
        if content_type:
            headers["Content-Type"] = content_type
        # An empty stream would make requests announce a chunked body it never sends: send b"".
        return self._file("POST", f"/files/{dir_id}", f"upload {name}", (201,), params=params,
                          data=stream if size else b"", headers=headers)

    def stat(self, path: str) -> FileDoc:
        return self._file("GET", "/files/metadata", f"stat {path}", params={"Path": path})

    def get(self, file_id: str) -> FileDoc:
        return self._file("GET", f"/files/{file_id}", f"file {file_id}")

    def children(self, dir_id: str, page_size: int = 100) -> Iterator[FileDoc]:
        """Every entry of a directory, following the listing's pagination (links.next)."""
        path: str | None = f"/files/{dir_id}?page[limit]={page_size}"
        while path:
            body = self.http.request("GET", path, f"list {dir_id}").json()
            for item in body.get("included") or []:
                yield FileDoc.from_resource(item)
            path = (body.get("links") or {}).get("next")

    def download(self, file_id: str) -> bytes:
        return self.http.request("GET", f"/files/download/{file_id}", f"download {file_id}").content

    def add_referenced_by(self, file_id: str, refs: list[dict]) -> list[dict]:
        body = json.dumps({"data": refs})
        response = self.http.request(
            "POST", f"/files/{file_id}/relationships/referenced_by", f"reference {file_id}",
            data=body, headers={"Content-Type": JSONAPI},
        )
        return response.json()["data"]

    # -- data --------------------------------------------------------------------------------

    def create_doc(self, doctype: str, doc: dict) -> dict:
        response = self.http.request("POST", f"/data/{doctype}/", f"create {doctype}", (201,), json=doc)
        return response.json()

    def create_doc_with_id(self, doctype: str, doc_id: str, doc: dict) -> dict:
        """PUT /data/:doctype/:id without _id/_rev: create with a fixed id (409 when it exists)."""
        return self.http.request("PUT", f"/data/{doctype}/{doc_id}", f"create {doctype} {doc_id}", json=doc).json()

    def get_doc(self, doctype: str, doc_id: str) -> dict:
        return self.http.request("GET", f"/data/{doctype}/{doc_id}", f"{doctype} {doc_id}").json()

    def update_doc(self, doctype: str, doc: dict) -> dict:
        return self.http.request("PUT", f"/data/{doctype}/{doc['_id']}", f"update {doctype}", json=doc).json()

    def delete_doc(self, doctype: str, doc_id: str, rev: str) -> dict:
        where = f"delete {doctype} {doc_id}"
        return self.http.request("DELETE", f"/data/{doctype}/{doc_id}", where, params={"rev": rev}).json()

    def all_docs(self, doctype: str, include_docs: bool = True) -> list[dict]:
        """Every row; none when the doctype's database was never written (cozy-stack passes
        CouchDB's 404 on, as its own client expects)."""
        params = {"include_docs": "true"} if include_docs else {}
        response = self._data_read("GET", f"/data/{doctype}/_all_docs", f"{doctype} _all_docs", params=params)
        return response.json().get("rows", []) if response is not None else []

    def _data_read(self, method: str, path: str, where: str, **kwargs: Any):
        """A read of a doctype's documents; None when its database does not exist (CouchDB's
        ``not_found`` 404, which cozy-stack passes on)."""
        response = self.http.request(method, path, where, expect=(200, 404), **kwargs)
        if response.status_code == 404:
            try:
                missing = response.json().get("error") == "not_found"
            except (ValueError, AttributeError):
                missing = False
            if not missing:
                raise error_from(response, where)
            return None
        return response

    def normal_docs(self, doctype: str, limit: int = 100) -> Iterator[dict]:
        """Every non-design document, following the bookmark."""
        bookmark = ""
        while True:
            params: dict[str, Any] = {"limit": limit}
            if bookmark:
                params["bookmark"] = bookmark
            response = self._data_read("GET", f"/data/{doctype}/_normal_docs", f"{doctype} _normal_docs",
                                       params=params)
            if response is None:
                return
            body = response.json()
            rows = body.get("rows") or []
            yield from rows
            bookmark = body.get("bookmark", "")
            if len(rows) < limit or not bookmark:
                return

    def find(self, doctype: str, selector: dict, limit: int = 100) -> list[dict]:
        body = {"selector": selector, "limit": limit}
        response = self._data_read("POST", f"/data/{doctype}/_find", f"{doctype} _find", json=body)
        return response.json()["docs"] if response is not None else []

    def close(self) -> None:
        self.http.close()
