"""The public API (files-data reference §0-§4; cozy-stack.md §2.2 /version, §4.1 hosts), in both modes."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
from urllib.parse import parse_qs, urlsplit

import pytest

from .conftest import Double, unique
from .table import Table

T = Table()
S = "cozy-stack.md"
F = "files-data"
JSONAPI = "application/vnd.api+json"
ROOT = "io.cozy.files.root-dir"


def instance(d: Double, **params) -> tuple[str, str]:
    domain = unique() + ".cozy.test"
    reply = d.create(domain, **params)
    assert reply.status == 201, reply.text
    return domain, d.token(domain)


def files_error(reply, status: int, title: str, detail: str, source: dict | None = None) -> None:
    assert reply.status == status, reply.text
    assert reply.header("Content-Type").startswith(JSONAPI)
    error = reply.json()["errors"][0]
    assert (error["status"], error["title"], error["detail"]) == (str(status), title, detail)
    if source is not None:
        assert error["source"] == source


def md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def upload(d, domain, token, name, data: bytes, parent=ROOT, headers=None, **query):
    return d.public("POST", f"/files/{parent}", domain, token, {"Type": "file", "Name": name, **query},
                    headers=headers, body=data)


def mkdir(d, domain, token, name, parent=ROOT, **query):
    return d.public("POST", f"/files/{parent}", domain, token, {"Type": "directory", "Name": name, **query})


# --- hosts (cozy-stack.md §2.2, §4.1)
@T.row(f"{S} §2.2 / §4.3", "/version answers 200 on any host, without auth; HEAD too")
def _(d: Double):
    for host in ("stack:8080", "nobody.example", "localhost"):
        reply = d.public("GET", "/version", host)
        assert reply.status == 200 and "version" in reply.json()
    assert d.public("HEAD", "/version", "x").status == 200


@T.row(f"{S} §1.12", "/status: 200 with status OK when CouchDB and the fs answer")
def _(d: Double):
    reply = d.public("GET", "/status", "localhost")
    assert reply.status == 200 and reply.json()["status"] == "OK"


@T.row(f"{F} §0", "an unknown host: 404")
def _(d: Double):
    assert d.public("GET", "/files/" + ROOT, "nobody.cozy.test", "x").status == 404


@T.row(f"{S} §4.1", "an app host answers for its instance and app (nested drive.<d>, flat <user>-drive.<rest>)")
def _(d: Double):
    domain, _ = instance(d, Apps="drive")
    user, rest = domain.split(".", 1)
    app_host = f"drive.{domain}" if d.mode == "nested" else f"{user}-drive.{rest}"
    reply = d.public("GET", "/", app_host)
    assert reply.status == 302
    location = urlsplit(reply.header("Location"))
    assert (location.scheme, location.netloc, location.path) == ("https", domain, "/auth/login")
    assert parse_qs(location.query)["redirect"] == [f"https://{app_host}/"]
    other = f"photos.{domain}" if d.mode == "nested" else f"{user}-photos.{rest}"
    assert d.public("GET", "/", other).status == 404  # not installed
    # The other mode's spelling is not an app host of this instance.
    wrong = f"{user}-drive.{rest}" if d.mode == "nested" else f"drive.{domain}"
    assert d.public("GET", "/", wrong).status == 404


@T.row(f"{S} §4.1", "an alias is served directly; an old domain gets a 308 to the domain")
def _(d: Double):
    alias, old = unique() + ".cozy.test", unique() + ".cozy.test"
    domain, token = instance(d, DomainAliases=alias, OldDomain=old)
    assert d.public("GET", "/files/" + ROOT, alias, token).status == 200
    assert d.public("GET", "/files/" + ROOT, alias, d.token(alias)).status == 200
    moved = d.public("GET", "/files/" + ROOT, old)
    assert moved.status == 308 and moved.header("Location") == f"https://{domain}/files/{ROOT}"


# --- tokens (files-data §0, §4)
@T.row(f"{F} §0", "no token: 401 `No token in request`")
def _(d: Double):
    domain, _ = instance(d)
    reply = d.public("GET", "/files/" + ROOT, domain)
    assert (reply.status, reply.text) == (401, "No token in request")


@T.row(f"{F} §0", "bad signature, or another instance's token: 400 `Invalid JWT token`")
def _(d: Double):
    domain, token = instance(d)
    other, other_token = instance(d)
    head, claims, sig = token.split(".")
    forged = f"{head}.{claims}.{sig[:-4]}AAAA"
    for bad in (forged, other_token, "not-a-jwt"):
        reply = d.public("GET", "/files/" + ROOT, domain, bad)
        assert (reply.status, reply.text) == (400, "Invalid JWT token")


@T.row(f"{F} §0 / §4", "expired token: 400 `Expired token` and WWW-Authenticate")
def _(d: Double):
    domain, _ = instance(d)
    token = d.token(domain, Expire="-1m")
    reply = d.public("GET", "/files/" + ROOT, domain, token)
    assert (reply.status, reply.text) == (400, "Expired token")
    assert reply.header("WWW-Authenticate") == ('Bearer error="invalid_token" '
                                                'error_description="The access token expired"')


@T.row(f"{F} §0 / §4", "empty or malformed scope: 400 at use")
def _(d: Double):
    domain, _ = instance(d)
    for scope in ("", "io.cozy.*", "IO.COZY.FILES"):
        reply = d.public("GET", "/files/" + ROOT, domain, d.token(domain, scope=scope))
        assert (reply.status, reply.text) == (400, "Permission scope is empty or malformed"), scope


@T.row(f"{F} §0 / §4", "a token without io.cozy.files: 403 `Forbidden`, text or JSON by Accept")
def _(d: Double):
    domain, _ = instance(d)
    token = d.token(domain, scope="io.cozy.contacts")
    reply = d.public("GET", "/files/" + ROOT, domain, token)
    assert (reply.status, reply.text, reply.header("Content-Type").split(";")[0]) == (403, "Forbidden", "text/plain")
    reply = d.public("GET", "/files/" + ROOT, domain, token, headers={"Accept": "application/json"})
    assert (reply.status, reply.json()) == (403, {"error": "Forbidden"})
    reply = d.public("GET", "/files/" + ROOT, domain, token, headers={"Accept": JSONAPI})
    assert (reply.status, reply.text) == (403, "Forbidden")


@T.row(f"{F} §4", "verbs: io.cozy.files:GET reads but cannot create")
def _(d: Double):
    domain, _ = instance(d)
    token = d.token(domain, scope="io.cozy.files:GET")
    assert d.public("GET", "/files/" + ROOT, domain, token).status == 200
    assert mkdir(d, domain, token, "x").status == 403


@T.row(f"{F} §0", "the token also passes as ?bearer_token= and as the Basic password")
def _(d: Double):
    domain, token = instance(d)
    assert d.public("GET", "/files/" + ROOT, domain, query={"bearer_token": token}).status == 200
    basic = base64.b64encode((":" + token).encode()).decode()
    assert d.public("GET", "/files/" + ROOT, domain, headers={"Authorization": "Basic " + basic}).status == 200


@T.row(f"{S} §1.8", "an app token (no permission in the double's apps) is refused: 403")
def _(d: Double):
    domain, _ = instance(d, Apps="drive")
    token = d.token(domain, audience="app", Subject="drive")
    assert d.public("GET", "/files/" + ROOT, domain, token).status == 403


# --- directories (files-data §1.2, §1.4, §1.5)
@T.row(f"{F} §1.2 / §1.4", "POST /files/:dir-id?Type=directory: 201, attributes, no Location header")
def _(d: Double):
    domain, token = instance(d)
    reply = mkdir(d, domain, token, "Docs", Tags="b,a,b, ,", CreatedAt="2020-01-02T03:04:05Z")
    assert reply.status == 201 and reply.header("Location") is None
    data = reply.json()["data"]
    attrs = data["attributes"]
    assert (data["type"], attrs["type"], attrs["name"], attrs["dir_id"], attrs["path"]) == (
        "io.cozy.files", "directory", "Docs", ROOT, "/Docs")
    assert attrs["tags"] == ["b", "a"] and attrs["created_at"] == "2020-01-02T03:04:05Z"
    assert data["links"] == {"self": "/files/" + data["id"]} and data["meta"]["rev"].startswith("1-")
    assert list(data["relationships"]) == ["referenced_by"]
    assert attrs["cozyMetadata"]["createdOn"] == f"https://{domain}/"


@T.row(f"{F} §1.2", "POST /files/ creates in the root; the same name again: 409 `file already exists`")
def _(d: Double):
    domain, token = instance(d)
    reply = d.public("POST", "/files/", domain, token, {"Type": "directory", "Name": "A"})
    assert reply.status == 201 and reply.json()["data"]["attributes"]["dir_id"] == ROOT
    files_error(mkdir(d, domain, token, "A"), 409, "Conflict", "file already exists")
    files_error(upload(d, domain, token, "A", b"x"), 409, "Conflict", "file already exists")


@T.row(f"{F} §1.2", "unknown parent: 404 `file does not exist`; Type missing or invalid: 422")
def _(d: Double):
    domain, token = instance(d)
    files_error(mkdir(d, domain, token, "A", parent="nope"), 404, "Not Found", "file does not exist")
    reply = d.public("POST", "/files/", domain, token, {"Type": "link", "Name": "A"})
    files_error(reply, 422, "Unprocessable Entity", "Invalid document type", {"pointer": "/data/attributes/type"})


@pytest.mark.parametrize("mode", ["nested", "flat"])
@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\nb", "a\rb"])
def test_bad_names(doubles, mode, name):
    """files-data §1.5: forbidden names → 422 `Invalid filename: …` with source.parameter name."""
    d = doubles[mode]
    domain, token = instance(d)
    for reply in (mkdir(d, domain, token, name), upload(d, domain, token, name, b"x")):
        files_error(reply, 422, "Unprocessable Entity", "Invalid filename: empty or contains an illegal character",
                    {"parameter": "name"})


@T.row(f"{F} §1.5", "names are byte-exact: NFC and NFD spellings and case variants coexist")
def _(d: Double):
    domain, token = instance(d)
    for name in ("caf\u00e9", "cafe\u0301", "Caf\u00e9"):
        assert mkdir(d, domain, token, name).status == 201


@T.row(f"{F} §1.2", "Path=/a/b&Recursive=true is mkdir -p, idempotent (201); without Recursive an existing dir 409")
def _(d: Double):
    domain, token = instance(d)
    query = {"Type": "directory", "Path": "/x/y/z", "Recursive": "true"}
    first = d.public("POST", "/files/", domain, token, query)
    again = d.public("POST", "/files/", domain, token, query)
    assert first.status == again.status == 201
    assert first.json()["data"]["id"] == again.json()["data"]["id"]
    assert first.json()["data"]["attributes"]["path"] == "/x/y/z"
    reply = d.public("POST", "/files/", domain, token, {"Type": "directory", "Path": "/x/y"})
    files_error(reply, 409, "Conflict", "file already exists")


# --- uploads (files-data §1.3)
@T.row(f"{F} §1.3 / §1.4", "upload: 201, size as a string, md5sum base64, mime and class from the name, no path")
def _(d: Double):
    domain, token = instance(d)
    data = b"hello, cozy\n"
    reply = upload(d, domain, token, "notes.txt", data, headers={"Content-MD5": md5(data)}, Tags="poem",
                   CreatedAt="2019-05-06T07:08:09Z")
    assert reply.status == 201, reply.text
    doc = reply.json()["data"]
    attrs = doc["attributes"]
    assert (attrs["size"], attrs["md5sum"], attrs["mime"], attrs["class"]) == (
        str(len(data)), md5(data), "text/plain", "text")
    assert attrs["executable"] is False and attrs["trashed"] is False and attrs["encrypted"] is False
    assert attrs["tags"] == ["poem"] and attrs["created_at"] == "2019-05-06T07:08:09Z"
    assert "path" not in attrs and "referenced_by" not in attrs and "metadata" not in attrs
    assert doc["relationships"]["parent"]["data"] == {"id": ROOT, "type": "io.cozy.files"}
    assert doc["relationships"]["referenced_by"]["data"] is None
    assert attrs["cozyMetadata"]["uploadedOn"] == f"https://{domain}/"


@pytest.mark.parametrize("mode", ["nested", "flat"])
@pytest.mark.parametrize("name,content_type,mime,cls", [
    ("a.pdf", None, "application/pdf", "pdf"),
    ("a.jpg", None, "image/jpeg", "image"),
    ("a.bin", "application/octet-stream", "application/octet-stream", "files"),
    ("a.zip", None, "application/zip", "zip"),
    ("a.txt", "image/png; charset=x", "image/png", "image"),
    ("a.url", "text/plain", "application/internet-shortcut", "shortcut"),
])
def test_mime_and_class(doubles, mode, name, content_type, mime, cls):
    """files-data §1.3: Content-Type (parameters dropped), else guessed from the name; class from the mime."""
    d = doubles[mode]
    domain, token = instance(d)
    headers = {"Content-Type": content_type} if content_type else {"Content-Type": ""}
    attrs = upload(d, domain, token, name, b"data", headers=headers).json()["data"]["attributes"]
    assert (attrs["mime"], attrs["class"]) == (mime, cls)


@T.row(f"{F} §1.3", "Content-MD5 mismatch: 412 `Invalid hash`; malformed: 422 `Given Content-MD5 is invalid`")
def _(d: Double):
    domain, token = instance(d)
    reply = upload(d, domain, token, "a.txt", b"data", headers={"Content-MD5": md5(b"other")})
    files_error(reply, 412, "Precondition Failed", "Invalid hash")
    reply = upload(d, domain, token, "a.txt", b"data", headers={"Content-MD5": "abc"})
    files_error(reply, 422, "Unprocessable Entity", "Given Content-MD5 is invalid", {"parameter": "Content-MD5"})
    assert d.public("GET", "/files/metadata", domain, token, {"Path": "/a.txt"}).status == 404


@T.row(f"{F} §1.3", "a body shorter than Content-Length: 412")
def _(d: Double):
    domain, token = instance(d)
    with socket.create_connection(("127.0.0.1", d.public_port), timeout=10) as sock:
        sock.sendall((f"POST /files/{ROOT}?Type=file&Name=short.txt HTTP/1.1\r\nHost: {domain}\r\n"
                      f"Authorization: Bearer {token}\r\nContent-Length: 10\r\n\r\nhello").encode())
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 412 "), answer[:200]


@T.row(f"{F} §1.3", "unknown parent: 404 `Parent directory with given DirID does not exist`")
def _(d: Double):
    domain, token = instance(d)
    files_error(upload(d, domain, token, "a", b"x", parent="nope"), 404, "Not Found",
                "Parent directory with given DirID does not exist")


@T.row(f"{F} §1.1 / §1.3", "uploading into the trash: 404 `Parent directory is in the trash`")
def _(d: Double):
    domain, token = instance(d)
    files_error(upload(d, domain, token, "a", b"x", parent="io.cozy.files.trash-dir"), 404, "Not Found",
                "Parent directory is in the trash")


@T.row(f"{F} §1.3", "over the disk quota: 413 `The file is too big and exceeds the disk quota`")
def _(d: Double):
    domain, token = instance(d, DiskQuota="10")
    assert upload(d, domain, token, "small", b"12345").status == 201
    files_error(upload(d, domain, token, "big", b"123456"), 413, "Request Entity Too Large",
                "The file is too big and exceeds the disk quota")


@T.row(f"{F} §1.3", "Date header sets created_at and updated_at; an earlier UpdatedAt is raised to created_at")
def _(d: Double):
    domain, token = instance(d)
    attrs = upload(d, domain, token, "a", b"x", headers={"Date": "Mon, 19 Sep 2016 12:35:08 GMT"}).json()
    assert attrs["data"]["attributes"]["created_at"] == attrs["data"]["attributes"]["updated_at"] == \
        "2016-09-19T12:35:08Z"
    attrs = upload(d, domain, token, "b", b"x", CreatedAt="2020-01-01T00:00:00Z",
                   UpdatedAt="2019-01-01T00:00:00Z").json()["data"]["attributes"]
    assert attrs["updated_at"] == "2020-01-01T00:00:00Z"


# --- reads (files-data §1.6)
@T.row(f"{F} §1.6 / §1.4", "GET /files/:id of a directory: parent, contents with meta.count, children in included")
def _(d: Double):
    domain, token = instance(d)
    folder = mkdir(d, domain, token, "F").json()["data"]["id"]
    upload(d, domain, token, "one", b"1", parent=folder)
    mkdir(d, domain, token, "sub", parent=folder)
    body = d.public("GET", f"/files/{folder}", domain, token).json()
    rel = body["data"]["relationships"]
    assert rel["parent"]["links"]["self"] == f"/files/{ROOT}"
    assert rel["contents"]["meta"]["count"] == 2
    assert {i["attributes"]["name"] for i in body["included"]} == {"one", "sub"}
    assert [c["id"] for c in rel["contents"]["data"]] == [i["id"] for i in body["included"]]


@T.row(f"{F} §1.1", "the trash is hidden from the root's listing")
def _(d: Double):
    domain, token = instance(d)
    body = d.public("GET", f"/files/{ROOT}", domain, token).json()
    ids = [c["id"] for c in body["data"]["relationships"]["contents"]["data"]]
    assert "io.cozy.files.trash-dir" not in ids
    assert d.public("GET", "/files/io.cozy.files.trash-dir", domain, token).json()["data"]["attributes"]["path"] == \
        "/.cozy_trash"


@T.row(f"{F} §1.4", "listing pagination: page[limit] and the next links walk every child once")
def _(d: Double):
    domain, token = instance(d)
    folder = mkdir(d, domain, token, "many").json()["data"]["id"]
    names = {f"f{i:02d}" for i in range(7)}
    for name in names:
        assert upload(d, domain, token, name, name.encode(), parent=folder).status == 201
    seen: list[str] = []
    body = d.public("GET", f"/files/{folder}", domain, token, {"page[limit]": "3"}).json()
    while True:
        assert len(body["included"]) <= 3 and body["data"]["relationships"]["contents"]["meta"]["count"] == 7
        seen += [i["attributes"]["name"] for i in body["included"]]
        link = (body.get("links") or {}).get("next")
        if not link:
            break
        path, _, query = link.partition("?")
        body = d.public("GET", path, domain, token, {k: v[0] for k, v in parse_qs(query).items()}).json()
    assert sorted(seen) == sorted(names) and len(seen) == 7


@T.row(f"{F} §1.6", "GET /files/metadata?Path=: by path (cleaned); not absolute: 400 `Path should be absolute`")
def _(d: Double):
    domain, token = instance(d)
    folder = mkdir(d, domain, token, "Documents").json()["data"]["id"]
    file_id = upload(d, domain, token, "hello.txt", b"hi", parent=folder).json()["data"]["id"]
    for path in ("/Documents/hello.txt", "/Documents//./hello.txt"):
        assert d.public("GET", "/files/metadata", domain, token, {"Path": path}).json()["data"]["id"] == file_id
    assert d.public("GET", "/files/metadata", domain, token, {"Path": "/Documents"}).json()["data"]["id"] == folder
    files_error(d.public("GET", "/files/metadata", domain, token, {"Path": "Documents"}), 400, "Bad Request",
                "Path should be absolute")
    files_error(d.public("GET", "/files/metadata", domain, token, {"Path": "/nope"}), 404, "Not Found",
                "file does not exist")


@T.row(f"{F} §1.6", "HEAD /files/:id: 200 empty, 404 when missing")
def _(d: Double):
    domain, token = instance(d)
    assert d.public("HEAD", f"/files/{ROOT}", domain, token).status == 200
    assert d.public("HEAD", "/files/nope", domain, token).status == 404


@T.row(f"{F} §1.6", "download by id and by path: content, mime, Content-Disposition, Etag, Range, If-None-Match")
def _(d: Double):
    domain, token = instance(d)
    data = b"0123456789"
    file_id = upload(d, domain, token, "d\u00e9j\u00e0.txt", data).json()["data"]["id"]
    reply = d.public("GET", f"/files/download/{file_id}", domain, token)
    assert reply.status == 200 and reply.body == data
    assert reply.header("Content-Type").startswith("text/plain")
    assert reply.header("Etag") == f'"{md5(data)}"'
    disposition = reply.header("Content-Disposition")
    assert disposition.startswith('inline; filename="') and "filename*=UTF-8''d%C3%A9j%C3%A0.txt" in disposition
    by_path = d.public("GET", "/files/download", domain, token, {"Path": "/d\u00e9j\u00e0.txt", "Dl": "1"})
    assert by_path.body == data and by_path.header("Content-Disposition").startswith("attachment;")
    ranged = d.public("GET", f"/files/download/{file_id}", domain, token, headers={"Range": "bytes=2-4"})
    assert (ranged.status, ranged.body) == (206, b"234")
    cached = d.public("GET", f"/files/download/{file_id}", domain, token, headers={"If-None-Match": f'"{md5(data)}"'})
    assert cached.status == 304
    assert d.public("GET", f"/files/download/{ROOT}", domain, token).status == 404


@T.row(f"{F} §5 / §1.3", "a tree uploaded with checksums reads back byte for byte")
def _(d: Double):
    domain, token = instance(d)
    tree = {"/t/a.txt": b"a" * 1000, "/t/b/c.bin": bytes(range(256)) * 300, "/t/b/d/e.txt": b""}
    for path, data in tree.items():
        parent, _, name = path.rpartition("/")
        parent_id = d.public("POST", "/files/", domain, token, {"Type": "directory", "Path": parent,
                                                               "Recursive": "true"}).json()["data"]["id"]
        assert upload(d, domain, token, name, data, parent=parent_id, headers={"Content-MD5": md5(data)}).status == 201
    for path, data in tree.items():
        assert d.public("GET", "/files/download", domain, token, {"Path": path}).body == data
        attrs = d.public("GET", "/files/metadata", domain, token, {"Path": path}).json()["data"]["attributes"]
        assert attrs["md5sum"] == md5(data) and attrs["size"] == str(len(data))
        assert (d.directory / "storage" / domain / path.lstrip("/")).read_bytes() == data


# --- references (files-data §2)
@T.row(f"{F} §2", "POST /files/:id/relationships/referenced_by: 200 {data, meta{rev,count}}; files keep duplicates")
def _(d: Double):
    domain, token = instance(d)
    file_id = upload(d, domain, token, "p.jpg", b"jpg").json()["data"]["id"]
    ref = {"type": "io.cozy.photos.albums", "id": "album1"}
    reply = d.public("POST", f"/files/{file_id}/relationships/referenced_by", domain, token,
                     body=json.dumps({"data": [ref]}).encode())
    assert reply.status == 200 and reply.header("Content-Type").startswith(JSONAPI)
    body = reply.json()
    assert body["data"] == [{"id": "album1", "type": "io.cozy.photos.albums"}] and body["meta"]["count"] == 1
    assert body["meta"]["rev"].startswith("2-")
    again = d.public("POST", f"/files/{file_id}/relationships/referenced_by", domain, token,
                     body=json.dumps({"data": ref}).encode()).json()
    assert again["meta"]["count"] == 2
    shown = d.public("GET", f"/files/{file_id}", domain, token).json()["data"]
    assert len(shown["relationships"]["referenced_by"]["data"]) == 2
    assert "referenced_by" not in shown["attributes"]
    removed = d.public("DELETE", f"/files/{file_id}/relationships/referenced_by", domain, token,
                       body=json.dumps({"data": [ref]}).encode()).json()
    assert removed["meta"]["count"] == 0


@T.row(f"{F} §2", "directories de-duplicate references; a body without data: 400")
def _(d: Double):
    domain, token = instance(d)
    folder = mkdir(d, domain, token, "album").json()["data"]["id"]
    ref = json.dumps({"data": [{"type": "io.cozy.photos.albums", "id": "a"}]}).encode()
    d.public("POST", f"/files/{folder}/relationships/referenced_by", domain, token, body=ref)
    reply = d.public("POST", f"/files/{folder}/relationships/referenced_by", domain, token, body=ref)
    assert reply.json()["meta"]["count"] == 1
    bad = d.public("POST", f"/files/{folder}/relationships/referenced_by", domain, token, body=b"{}")
    files_error(bad, 400, "Bad Request", "JSON input is malformed or is missing mandatory fields")


@T.row(f"{F} §2", "POST /data/:type/:id/relationships/references: 204; GET lists the files; unknown file: 404")
def _(d: Double):
    domain, token = instance(d)
    ids = [upload(d, domain, token, f"p{i}.jpg", b"x").json()["data"]["id"] for i in range(3)]
    body = json.dumps({"data": [{"type": "io.cozy.files", "id": i} for i in ids]}).encode()
    path = "/data/io.cozy.photos.albums/album%2F1/relationships/references"
    reply = d.public("POST", path, domain, token, body=body)
    assert (reply.status, reply.body) == (204, b"")
    listing = d.public("GET", path, domain, token, {"page[limit]": "2"}).json()
    assert listing["meta"]["count"] == 3 and len(listing["data"]) == 2 and "next" in listing["links"]
    assert all(item["type"] == "io.cozy.files" for item in listing["data"])
    shown = d.public("GET", f"/files/{ids[0]}", domain, token).json()["data"]
    assert shown["relationships"]["referenced_by"]["data"] == [{"id": "album/1", "type": "io.cozy.photos.albums"}]
    bad = json.dumps({"data": [{"type": "io.cozy.files", "id": ids[0]}, {"type": "io.cozy.files", "id": "nope"}]})
    reply = d.public("POST", path.replace("album%2F1", "album2"), domain, token, body=bad.encode())
    assert (reply.status, reply.json()) == (404, {"error": "Not Found(404): file does not exist"})
    shown = d.public("GET", f"/files/{ids[0]}", domain, token).json()["data"]
    assert len(shown["relationships"]["referenced_by"]["data"]) == 1  # nothing written by the failed call
    reply = d.public("DELETE", path, domain, token, body=body)
    assert reply.status == 204
    assert d.public("GET", path, domain, token).json()["meta"]["count"] == 0


# --- read from cozy-stack's source at db1163854 (docs/double.md, "Public API")
W = "cozy-stack web/"


def block(d: Double, domain: str, reason: str) -> None:
    reply = d.admin("PATCH", f"/instances/{domain}", {"Blocked": "true", "BlockingReason": reason})
    assert reply.status == 200, reply.text


@T.row(f"{W}middlewares/instance.go handleBlockedInstance", "PAYMENT_FAILED: 402 and a JSON list of one Blocked "
       "error; HTML asked: a page; a CLI token goes through (CheckInstanceBlocked)")
def _(d: Double):
    domain, token = instance(d)
    block(d, domain, "PAYMENT_FAILED")
    reply = d.public("GET", f"/files/{ROOT}", domain, headers={"Accept": "application/json"})
    assert reply.status == 402
    assert reply.json() == [{"status": "402", "title": "Blocked", "code": "UNKNOWN",
                             "detail": "The Twake is blocked for an unknown reason"}]
    page = d.public("GET", f"/files/{ROOT}", domain, headers={"Accept": "text/html"})
    assert page.status == 402 and page.header("Content-Type").startswith("text/html")
    assert "The Twake requires a payment" in page.text
    assert d.public("GET", f"/files/{ROOT}", domain, token).status == 200


@T.row(f"{W}routing.go mwsNotBlocked", "a blocked instance keeps /settings and /apps open; /data is blocked; an "
       "unknown reason: 503")
def _(d: Double):
    domain, token = instance(d)
    app_token = d.token(domain, scope="", audience="app", Subject="drive")
    block(d, domain, "whatever")
    assert d.public("GET", "/settings/capabilities", domain, app_token).status == 200
    assert d.public("GET", "/apps/", domain).status == 401  # not blocked: the token is what is missing
    reply = d.public("GET", "/data/io.cozy.contacts/_all_docs", domain, app_token)
    assert reply.status == 503 and reply.json()[0]["code"] == "UNKNOWN"


@T.row(f"{W}routing.go SetupAppsHandler", "an app host of a blocked instance answers the blocked page (HTML "
       "by default)")
def _(d: Double):
    domain, _ = instance(d, Apps="drive")
    user, rest = domain.split(".", 1)
    app_host = f"drive.{domain}" if d.mode == "nested" else f"{user}-drive.{rest}"
    assert d.public("GET", "/", app_host).status == 302
    block(d, domain, "PAYMENT_FAILED")
    reply = d.public("GET", "/", app_host)
    assert reply.status == 402 and reply.header("Content-Type").startswith("text/html")


@T.row(f"{W}middlewares/instance.go handleBlockedInstance", "IMPORTING/MOVING: /move/ open; JSON: 503 with the "
       "payment message (as the source words it); HTML: 302 to /move/importing; LOGIN_FAILED: 503 page")
def _(d: Double):
    domain, _ = instance(d)
    block(d, domain, "IMPORTING")
    reply = d.public("GET", f"/files/{ROOT}", domain, headers={"Accept": "application/vnd.api+json"})
    assert (reply.status, reply.json()) == (503, {"error": "The Twake requires a payment"})
    reply = d.public("GET", f"/files/{ROOT}", domain, headers={"Accept": "text/html"})
    assert (reply.status, reply.header("Location")) == (302, f"https://{domain}/move/importing")
    # /move/ stays open: the route answers (web/move exportHandler: "nope" decodes as base64, then
    # model/move GetExport refuses its MAC: ErrMACInvalid, 401 "exports: invalid mac")
    reply = d.public("GET", "/move/exports/nope", domain)
    assert (reply.status, reply.json()) == (401, {"error": "exports: invalid mac"})
    block(d, domain, "LOGIN_FAILED")
    reply = d.public("GET", f"/files/{ROOT}", domain, headers={"Accept": "application/json"})
    assert reply.status == 503 and "too many login attempts" in reply.text
    assert reply.header("Content-Type").startswith("text/html")


@T.row(f"{W}settings/disk_usage.go diskUsage, checkAccessToDiskUsage", "used, files, versions as strings; quota "
       "only when set; trash with include=trash; any POST rule on io.cozy.files reads it")
def _(d: Double):
    domain, token = instance(d)
    upload(d, domain, token, "a.txt", b"12345")
    attrs = d.public("GET", "/settings/disk-usage", domain, token).json()["data"]["attributes"]
    assert attrs == {"used": "5", "files": "5", "versions": "0"}
    with_trash = d.public("GET", "/settings/disk-usage", domain, token, {"include": "trash"}).json()
    assert with_trash["data"]["attributes"]["trash"] == "0"
    domain2, token2 = instance(d, DiskQuota="1000")
    attrs = d.public("GET", "/settings/disk-usage", domain2, token2).json()["data"]["attributes"]
    assert attrs["quota"] == "1000"
    # checkAccessToDiskUsage: CanWriteToAnyDirectory, a POST rule on io.cozy.files even on one directory.
    narrow = d.token(domain, scope=f"io.cozy.files:POST:{ROOT}")
    assert d.public("GET", "/settings/disk-usage", domain, narrow).status == 200
    assert d.public("GET", "/settings/disk-usage", domain, d.token(domain, scope="io.cozy.contacts")).status == 403


@T.row(f"{W}settings/capabilities.go getCapabilities", "any valid token; flat_subdomains follows the config")
def _(d: Double):
    domain, _ = instance(d)
    token = d.token(domain, scope="io.cozy.contacts")
    reply = d.public("GET", "/settings/capabilities", domain, token)
    assert reply.status == 200 and reply.header("Content-Type").startswith(JSONAPI)
    data = reply.json()["data"]
    assert (data["type"], data["id"]) == ("io.cozy.settings", "io.cozy.settings.capabilities")
    assert data["attributes"] == {"file_versioning": True, "flat_subdomains": d.mode == "flat",
                                  "can_auth_with_password": True, "can_auth_with_magic_links": False,
                                  "can_auth_with_oidc": False}
    assert d.public("GET", "/settings/capabilities", domain).status == 401


@T.row(f"{W}settings/instance.go getInstance, updateInstance", "the settings document with the instance's fields; "
       "PUT keeps what it is given, rev checked")
def _(d: Double):
    domain, token = instance(d, Locale="fr", Email="a@example.org")
    token = d.token(domain, scope="io.cozy.settings")
    data = d.public("GET", "/settings/instance", domain, token).json()["data"]
    assert data["id"] == "io.cozy.settings.instance" and data["attributes"]["locale"] == "fr"
    assert data["attributes"]["email"] == "a@example.org" and data["attributes"]["auth_mode"] == "basic"
    body = {"data": {"type": "io.cozy.settings", "id": data["id"], "meta": data["meta"],
                     "attributes": {**data["attributes"], "tz": "Europe/Paris"}}}
    reply = d.public("PUT", "/settings/instance", domain, token, body=json.dumps(body).encode())
    assert reply.status == 200 and reply.json()["data"]["attributes"]["tz"] == "Europe/Paris"
    stale = d.public("PUT", "/settings/instance", domain, token, body=json.dumps(body).encode())
    assert stale.status == 409


@T.row(f"{W}permissions/permissions.go displayPermissions", "/permissions/self: the token's rules as rule<i>, "
       "verbs in order, empty fields left out")
def _(d: Double):
    domain, _ = instance(d)
    token = d.token(domain, scope="io.cozy.files:GET,POST io.cozy.contacts")
    attrs = d.public("GET", "/permissions/self", domain, token).json()["data"]["attributes"]
    assert attrs == {"type": "cli", "permissions": {
        "rule0": {"type": "io.cozy.files", "verbs": ["GET", "POST"]},
        "rule1": {"type": "io.cozy.contacts", "verbs": ["GET", "POST", "PUT", "PATCH", "DELETE"]}}}


@T.row(f"{W}files/files.go Trash, Restore, DestroyFileHandler, ClearTrashHandler; model/vfs TrashFile, "
       "RestoreFile, tryOrUseSuffix, getRestoreDir", "DELETE /files/:id trashes (200, restore_path; a name taken in "
       "the trash gets ' (<9 digits>)'); restore strips it, remakes a gone parent; trash/:id destroys; "
       "DELETE /files/trash: 204")
def _(d: Double):
    domain, token = instance(d)
    dir_id = mkdir(d, domain, token, "D").json()["data"]["id"]
    file_id = upload(d, domain, token, "f.txt", b"abc", parent=dir_id).json()["data"]["id"]
    twin_id = upload(d, domain, token, "f.txt", b"abc").json()["data"]["id"]
    reply = d.public("POST", f"/files/trash/{file_id}", domain, token)
    files_error(reply, 500, "Unqualified error", "File or directory is not in the trash")
    trashed = d.public("DELETE", f"/files/{file_id}", domain, token)
    attrs = trashed.json()["data"]["attributes"]
    assert trashed.status == 200 and attrs["trashed"] is True and attrs["dir_id"] == "io.cozy.files.trash-dir"
    assert attrs["restore_path"] == "/D"
    files_error(d.public("DELETE", f"/files/{file_id}", domain, token), 400, "Bad Request",
                "File or directory is already in the trash")
    twin = d.public("DELETE", f"/files/{twin_id}", domain, token).json()["data"]["attributes"]
    assert re.fullmatch(r"f\.txt \(\d{9}\)", twin["name"]), twin["name"]
    restored = d.public("POST", f"/files/trash/{twin_id}", domain, token).json()["data"]["attributes"]
    assert restored["name"] == "f.txt" and restored["dir_id"] == ROOT and "restore_path" not in restored
    trashed_dir = d.public("DELETE", f"/files/{dir_id}", domain, token).json()["data"]["attributes"]
    assert trashed_dir["path"] == "/.cozy_trash/D"
    assert d.public("DELETE", f"/files/trash/{dir_id}", domain, token).status == 204
    # The file's parent is gone: restoring it makes /D again.
    back = d.public("POST", f"/files/trash/{file_id}", domain, token).json()["data"]["attributes"]
    assert back["trashed"] is False
    assert d.public("GET", "/files/metadata", domain, token, {"Path": "/D/f.txt"}).status == 200
    d.public("DELETE", f"/files/{twin_id}", domain, token)
    assert d.public("DELETE", "/files/trash", domain, token).status == 204
    assert d.public("GET", f"/files/{twin_id}", domain, token).status == 404
    listed = d.public("GET", "/files/trash", domain, token).json()
    assert listed["data"] == [] and listed["meta"]["count"] == 0
    reply = d.public("PATCH", f"/files/{ROOT}", domain, token, body=b'{"data": {"attributes": {"name": "x"}}}')
    files_error(reply, 500, "Unqualified error", "invalid argument")
    reply = d.public("DELETE", f"/files/{ROOT}", domain, token)
    files_error(reply, 412, "Precondition Failed", "Forbidden document move", {"parameter": "dir-id"})


@T.row(f"{W}files/files.go FileDownload, CopyFile, ModifyMetadataByIDHandler, OverwriteFileContentHandler",
       "POST /files/downloads gives links.related; copy is '<name> (copy)<ext>'; PATCH renames; PUT replaces")
def _(d: Double):
    domain, token = instance(d)
    file_id = upload(d, domain, token, "f.txt", b"abc").json()["data"]["id"]
    link = d.public("POST", "/files/downloads", domain, token, {"Id": file_id}).json()["links"]["related"]
    assert link.startswith("/files/downloads/") and link.endswith("/f.txt")
    got = d.public("GET", link, domain)
    assert (got.status, got.body) == (200, b"abc")
    assert d.public("GET", "/files/downloads/nope/f.txt", domain).status == 404
    copy = d.public("POST", f"/files/{file_id}/copy", domain, token)
    assert copy.status == 201 and copy.json()["data"]["attributes"]["name"] == "f (copy).txt"
    again = d.public("POST", f"/files/{file_id}/copy", domain, token).json()["data"]["attributes"]
    assert again["name"] == "f (copy) (2).txt"  # vfs.ConflictName
    body = json.dumps({"data": {"attributes": {"name": "g.txt"}}}).encode()
    renamed = d.public("PATCH", f"/files/{file_id}", domain, token, body=body)
    assert renamed.status == 200 and renamed.json()["data"]["attributes"]["name"] == "g.txt"
    put = d.public("PUT", f"/files/{file_id}", domain, token, body=b"new!", headers={"Content-MD5": md5(b"new!")})
    assert put.status == 200 and put.json()["data"]["attributes"]["size"] == "4"
    assert d.public("GET", "/files/download", domain, token, {"Path": "/g.txt"}).body == b"new!"


@T.row(f"{W}../pkg/jsonapi/jsonapi.go ExtractPaginationCursor, PaginationCursorToParams; web/files/paginated.go "
       "DirData, dirDataList", "directory pages: cursor [[dir_id, type, name], next id]; page[skip] gives a skip "
       "link, encoded as url.Values.Encode; contents has its self and next links; /relationships/contents lists")
def _(d: Double):
    domain, token = instance(d)
    dir_id = mkdir(d, domain, token, "P").json()["data"]["id"]
    for i in range(5):
        upload(d, domain, token, f"f{i}", b"x", parent=dir_id)
    first = d.public("GET", f"/files/{dir_id}", domain, token, {"page[limit]": "2"}).json()
    cursor = parse_qs(urlsplit(first["links"]["next"]).query)["page[cursor]"][0]
    key, next_id = json.loads(cursor)
    assert key == [dir_id, "file", "f2"] and isinstance(next_id, str)
    second = d.public("GET", f"/files/{dir_id}", domain, token, {"page[limit]": "2", "page[cursor]": cursor}).json()
    assert [f["attributes"]["name"] for f in second["included"]] == ["f2", "f3"]
    skipped = d.public("GET", f"/files/{dir_id}", domain, token, {"page[limit]": "2", "page[skip]": "2"}).json()
    assert [f["attributes"]["name"] for f in skipped["included"]] == ["f2", "f3"]
    assert skipped["links"]["next"] == f"/files/{dir_id}?page%5Blimit%5D=2&page%5Bskip%5D=4"
    contents = skipped["data"]["relationships"]["contents"]
    assert contents["links"] == {"self": f"/files/{dir_id}/relationships/contents",
                                 "next": f"/files/{dir_id}/relationships/contents?page%5Blimit%5D=2&page%5Bskip%5D=4"}
    listed = d.public("GET", f"/files/{dir_id}/relationships/contents", domain, token, {"page[limit]": "4"}).json()
    assert [f["attributes"]["name"] for f in listed["data"]] == ["f0", "f1", "f2", "f3"]
    assert listed["meta"] == {"count": 5} and urlsplit(listed["links"]["next"]).path.endswith("/contents")
    bad = d.public("GET", f"/files/{dir_id}", domain, token, {"page[cursor]": json.dumps([dir_id, "file", "f2"])})
    assert bad.status == 400


@T.row(f"{W}files/references.go ListReferencesHandler", "next link: page[cursor]=[[doctype, id], next file id] "
       "then page[limit], encoded; sort=datetime adds the date to the key; another sort: 400")
def _(d: Double):
    domain, token = instance(d)
    ids = [upload(d, domain, token, f"p{i}.jpg", b"x").json()["data"]["id"] for i in range(3)]
    body = json.dumps({"data": [{"type": "io.cozy.files", "id": i} for i in ids]}).encode()
    path = "/data/io.cozy.photos.albums/al/relationships/references"
    assert d.public("POST", path, domain, token, body=body).status == 204
    listing = d.public("GET", path, domain, token, {"page[limit]": "2"}).json()
    target = urlsplit(listing["links"]["next"])
    assert target.path == path and target.query.startswith("page%5Bcursor%5D=")
    query = parse_qs(target.query)
    second_id = sorted(ids)[2]
    assert json.loads(query["page[cursor]"][0]) == [["io.cozy.photos.albums", "al"], second_id]
    rest = d.public("GET", path, domain, token, {"page[limit]": "2", "page[cursor]": query["page[cursor]"][0]})
    assert [r["id"] for r in rest.json()["data"]] == [second_id]
    by_date = d.public("GET", path, domain, token, {"page[limit]": "1", "sort": "datetime"}).json()
    key, _ = json.loads(parse_qs(urlsplit(by_date["links"]["next"]).query)["page[cursor]"][0])
    assert key[:2] == ["io.cozy.photos.albums", "al"] and len(key) == 3
    assert d.public("GET", path, domain, token, {"sort": "name"}).status == 400


@T.row(f"{W}files/files.go Routes", "GET /files/:id/relationships/referenced_by is no route: 405")
def _(d: Double):
    domain, token = instance(d)
    reply = d.public("GET", f"/files/{ROOT}/relationships/referenced_by", domain, token)
    assert reply.status == 405


@T.row(f"{W}files/files.go FindFilesMango, GetAllDocs, ChangesFeedForFiles", "_find as JSON:API with a count; "
       "_all_docs skips the trash; _changes refuses an unknown parameter")
def _(d: Double):
    domain, token = instance(d)
    file_id = upload(d, domain, token, "f.txt", b"x").json()["data"]["id"]
    found = d.public("POST", "/files/_find", domain, token, body=json.dumps({"selector": {"name": "f.txt"}}).encode())
    assert found.status == 200 and [r["id"] for r in found.json()["data"]] == [file_id]
    assert found.json()["meta"]["count"] == 1 and found.json()["data"][0]["attributes"]["path"] == "/f.txt"
    keys = json.dumps({"keys": [file_id, "io.cozy.files.trash-dir"]}).encode()
    docs = d.public("POST", "/files/_all_docs", domain, token, body=keys).json()["data"]
    assert [r["id"] for r in docs] == [file_id]
    changes = d.public("GET", "/files/_changes", domain, token, {"include_docs": "true"}).json()
    assert any(r["id"] == file_id for r in changes["results"]) and "last_seq" in changes
    bad = d.public("GET", "/files/_changes", domain, token, {"nope": "1"})
    assert bad.status == 400 and bad.json()["errors"][0]["detail"] == "Unsupported query parameter 'nope'"


@T.row(f"{W}errors/errors.go HTMLErrorHandler; middlewares/instance.go NeedInstance", "an unknown instance: 404; "
       "JSON asked: {\"error\": {}} (the error value marshals as an empty object); else the text")
def _(d: Double):
    reply = d.public("GET", f"/files/{ROOT}", "nobody.cozy.test", headers={"Accept": "application/json"})
    assert (reply.status, reply.json()) == (404, {"error": {}})
    reply = d.public("GET", f"/files/{ROOT}", "nobody.cozy.test")
    assert (reply.status, reply.text) == (404, "Instance not found")
    assert d.public("HEAD", f"/files/{ROOT}", "nobody.cozy.test").body == b""


@T.row(f"{W}errors/errors.go HTMLErrorHandler; echo's router", "no route: 404 Not Found; a route under another "
       "method: 405 with Allow (OPTIONS first), as JSON when asked")
def _(d: Double):
    domain, token = instance(d)
    assert d.public("GET", "/nothing/here", domain, token).text == "Not Found"
    reply = d.public("POST", "/settings/capabilities", domain, token, headers={"Accept": "application/json"})
    assert (reply.status, reply.json()) == (405, {"error": "Method Not Allowed"})
    assert reply.header("Allow") == "OPTIONS, GET"
    # echo's router goes back to /files/:file-id when /files/metadata has no PUT: a file look-up.
    assert d.public("PUT", "/files/metadata", domain, token).status == 404


@T.row(f"{W}middlewares/permissions.go ExtractClaims", "a token issued for the instance's old domain is valid; "
       "another issuer: 400 Invalid JWT token")
def _(d: Double):
    import time

    from stackdouble import tokens
    from stackdouble.couch import GLOBAL_INSTANCES, Couch
    from stackdouble.instances import unb64

    old = unique() + ".cozy.test"
    domain, _ = instance(d, OldDomain=old)
    couch = Couch(f"http://127.0.0.1:{d.couch_port}/")
    doc = next(x for x in couch.find(GLOBAL_INSTANCES, {"domain": domain}))
    secret = unb64(doc["cli_secret"])
    for issuer, status in ((old, 200), ("other.cozy.test", 400)):
        token = tokens.make(secret, "cli", issuer, "CLI", "io.cozy.files", time.time())
        d.minted.append(token)
        reply = d.public("GET", f"/files/{ROOT}", domain, token)
        assert reply.status == status, reply.text


@T.row(f"{W}middlewares/permissions.go GetRequestToken, ParseJWT", "a refused token gets WWW-Authenticate: Bearer "
       "error=\"invalid_token\"; a refresh token: 400 `Unrecognized token audience [refresh]`; `bearer ` in lower "
       "case is no scheme")
def _(d: Double):
    domain, token = instance(d)
    reply = d.public("GET", f"/files/{ROOT}", domain, "not-a-jwt")
    assert (reply.status, reply.header("WWW-Authenticate")) == (400, 'Bearer error="invalid_token"')
    refresh = d.token(domain, audience="refresh")
    reply = d.public("GET", f"/files/{ROOT}", domain, refresh)
    assert (reply.status, reply.text) == (400, "Unrecognized token audience [refresh]")
    reply = d.public("GET", f"/files/{ROOT}", domain, headers={"Authorization": "bearer " + token})
    assert (reply.status, reply.text) == (401, "No token in request")


@pytest.mark.parametrize("check", T.rows)
@pytest.mark.parametrize("mode", ["nested", "flat"])
def test_public(doubles, mode, check):
    check(doubles[mode])

