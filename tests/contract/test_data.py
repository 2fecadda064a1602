"""The data API (files-data reference §3, §0, §4), in both modes."""

from __future__ import annotations

import json

import pytest

from .conftest import Double, unique
from .table import Table

T = Table()
F = "files-data"


def instance(d: Double, scope: str = "io.cozy.contacts io.cozy.photos.albums io.cozy.files") -> tuple[str, str]:
    domain = unique() + ".cozy.test"
    assert d.create(domain).status == 201
    return domain, d.token(domain, scope=scope)


def call(d, domain, token, method, path, body=None, query=None, headers=None):
    raw = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    return d.public(method, path, domain, token, query, headers, raw)


def created(d, domain, token, doctype="io.cozy.contacts", **fields):
    reply = call(d, domain, token, "POST", f"/data/{doctype}/", {"fn": "Ann", **fields})
    assert reply.status == 201, reply.text
    return reply.json()


@T.row(f"{F} §3", "POST /data/:doctype/: 201 {ok, id, rev, type, data with _id, _rev, _type}")
def _(d: Double):
    domain, token = instance(d)
    body = created(d, domain, token, email="ann@example.org")
    assert body["ok"] is True and body["type"] == "io.cozy.contacts" and body["rev"].startswith("1-")
    assert body["data"] == {"_id": body["id"], "_rev": body["rev"], "_type": "io.cozy.contacts", "fn": "Ann",
                            "email": "ann@example.org"}


@T.row(f"{F} §3", "POST with an _id: 400 defined_id; invalid JSON: 400 `Bad Request(400): …`")
def _(d: Double):
    domain, token = instance(d)
    reply = call(d, domain, token, "POST", "/data/io.cozy.contacts/", {"_id": "x"})
    assert (reply.status, reply.json()) == (400, {"ok": False, "status": "400", "error": "defined_id",
                                                  "reason": "document _id should be empty"})
    reply = call(d, domain, token, "POST", "/data/io.cozy.contacts/", b"{not json")
    assert reply.status == 400 and reply.json()["error"].startswith("Bad Request(400): ")


@T.row(f"{F} §0", "routes keep their trailing slash: POST /data/:doctype (no slash) is not the create route")
def _(d: Double):
    domain, token = instance(d)
    assert call(d, domain, token, "POST", "/data/io.cozy.contacts", {"fn": "x"}).status in (404, 405)


@T.row(f"{F} §3", "GET /data/:doctype/:id: the raw doc with _type; 404 missing; wrong_doctype; _id → 400 bad_id")
def _(d: Double):
    domain, token = instance(d)
    body = created(d, domain, token)
    reply = call(d, domain, token, "GET", f"/data/io.cozy.contacts/{body['id']}")
    assert reply.status == 200 and reply.json() == {**body["data"]}
    reply = call(d, domain, token, "GET", "/data/io.cozy.contacts/nope")
    assert (reply.status, reply.json()) == (404, {"ok": False, "status": "404", "error": "not_found",
                                                  "reason": "missing"})
    reply = call(d, domain, token, "GET", "/data/io.cozy.photos.albums/nope")
    assert reply.status == 404 and reply.json()["reason"] == "wrong_doctype"
    reply = call(d, domain, token, "GET", "/data/io.cozy.contacts/_x")
    assert reply.status == 400 and reply.json()["error"] == "bad_id"


@T.row(f"{F} §3", "PUT with _id and _rev: 200, new rev, full replacement; stale rev: 409 conflict")
def _(d: Double):
    domain, token = instance(d)
    body = created(d, domain, token, email="a@b")
    doc = {"_id": body["id"], "_rev": body["rev"], "fn": "Bob", "_type": "ignored"}
    reply = call(d, domain, token, "PUT", f"/data/io.cozy.contacts/{body['id']}", doc)
    assert reply.status == 200 and reply.json()["rev"].startswith("2-")
    assert reply.json()["data"]["_type"] == "io.cozy.contacts"
    got = call(d, domain, token, "GET", f"/data/io.cozy.contacts/{body['id']}").json()
    assert got["fn"] == "Bob" and "email" not in got
    reply = call(d, domain, token, "PUT", f"/data/io.cozy.contacts/{body['id']}", doc)
    assert (reply.status, reply.json()) == (409, {"ok": False, "status": "409", "error": "conflict",
                                                  "reason": "Document update conflict."})


@T.row(f"{F} §3", "PUT with neither _id nor _rev creates with that id: 200 (not 201), rev 1-; again: 409")
def _(d: Double):
    domain, token = instance(d)
    reply = call(d, domain, token, "PUT", "/data/io.cozy.contacts/fixed-id", {"fn": "F"})
    assert reply.status == 200 and reply.json()["rev"].startswith("1-") and reply.json()["id"] == "fixed-id"
    assert call(d, domain, token, "PUT", "/data/io.cozy.contacts/fixed-id", {"fn": "F"}).status == 409


@T.row(f"{F} §3", "PUT errors: _id ≠ URL, only one of _id/_rev, missing doc")
def _(d: Double):
    domain, token = instance(d)
    body = created(d, domain, token)
    reply = call(d, domain, token, "PUT", f"/data/io.cozy.contacts/{body['id']}", {"_id": "other", "_rev": "1-x"})
    assert (reply.status, reply.json()) == (400, {"error": "Bad Request(400): document _id doesnt match url"})
    reply = call(d, domain, token, "PUT", f"/data/io.cozy.contacts/{body['id']}", {"_id": body["id"]})
    assert reply.status == 400 and "You must either provide an _id and _rev" in reply.json()["error"]
    reply = call(d, domain, token, "PUT", "/data/io.cozy.contacts/ghost", {"_id": "ghost", "_rev": "1-abc"})
    assert reply.status == 404 and reply.json()["error"] == "not_found"


@T.row(f"{F} §3", "DELETE ?rev=: 200 {ok, id, rev, type, deleted: true}; no rev 400; If-Match ≠ rev 400; bad rev 409")
def _(d: Double):
    domain, token = instance(d)
    body = created(d, domain, token)
    path = f"/data/io.cozy.contacts/{body['id']}"
    reply = call(d, domain, token, "DELETE", path)
    assert (reply.status, reply.json()) == (400, {"error": "Bad Request(400): delete without revision"})
    reply = call(d, domain, token, "DELETE", path, query={"rev": body["rev"]}, headers={"If-Match": "1-other"})
    assert reply.json() == {"error": "Bad Request(400): If-Match Header and rev query parameters mismatch"}
    assert call(d, domain, token, "DELETE", path, query={"rev": "1-0123456789abcdef0123456789abcdef"}).status == 409
    reply = call(d, domain, token, "DELETE", path, headers={"If-Match": body["rev"]})
    answer = reply.json()
    assert reply.status == 200 and answer["deleted"] is True and answer["ok"] is True
    assert (answer["id"], answer["type"]) == (body["id"], "io.cozy.contacts") and answer["rev"].startswith("2-")
    assert call(d, domain, token, "GET", path).json()["reason"] == "deleted"


@T.row(f"{F} §3", "_all_docs proxies CouchDB (GET, POST keys); DesignDocs=false; Fields projection")
def _(d: Double):
    domain, token = instance(d)
    ids = [created(d, domain, token, n={"a": i, "b": 0})["id"] for i in range(3)]
    call(d, domain, token, "POST", "/data/io.cozy.contacts/_index", {"index": {"fields": ["fn"]}})
    rows = call(d, domain, token, "GET", "/data/io.cozy.contacts/_all_docs").json()["rows"]
    assert any(r["id"].startswith("_design/") for r in rows)
    # The myself contact is there too: three created, plus one.
    plain = call(d, domain, token, "GET", "/data/io.cozy.contacts/_all_docs",
                 query={"DesignDocs": "false", "include_docs": "true", "Fields": "n.a"}).json()["rows"]
    assert len(plain) == 4 and not any(r["id"].startswith("_design/") for r in plain)
    mine = [r["doc"] for r in plain if r["id"] in ids]
    assert sorted(doc["n"]["a"] for doc in mine) == [0, 1, 2] and all("fn" not in doc for doc in mine)
    keyed = call(d, domain, token, "POST", "/data/io.cozy.contacts/_all_docs", {"keys": ids[:2]}).json()
    assert [r["id"] for r in keyed["rows"]] == ids[:2]


@T.row(f"{F} §3", "_normal_docs: no design docs, total_rows, bookmark paging; limit >1000 → 100")
def _(d: Double):
    domain, token = instance(d, scope="io.cozy.photos.albums")
    for i in range(5):
        created(d, domain, token, "io.cozy.photos.albums", name=f"a{i}")
    call(d, domain, token, "POST", "/data/io.cozy.photos.albums/_index", {"index": {"fields": ["name"]}})
    first = call(d, domain, token, "GET", "/data/io.cozy.photos.albums/_normal_docs", query={"limit": "3"}).json()
    assert first["total_rows"] == 5 and len(first["rows"]) == 3 and first["bookmark"]
    rest = call(d, domain, token, "GET", "/data/io.cozy.photos.albums/_normal_docs",
                query={"limit": "3", "bookmark": first["bookmark"]}).json()
    names = [r["name"] for r in first["rows"] + rest["rows"]]
    assert sorted(names) == [f"a{i}" for i in range(5)]
    assert not any(r["_id"].startswith("_design/") for r in first["rows"] + rest["rows"])


@T.row(f"{F} §3", "_index then _find: {docs, limit, next, bookmark}; limit >1000 → 100; sort without index: no_index")
def _(d: Double):
    domain, token = instance(d)
    for i in range(3):
        created(d, domain, token, city="Paris" if i < 2 else "Lyon", rank=i)
    reply = call(d, domain, token, "POST", "/data/io.cozy.contacts/_index", {"index": {"fields": ["city"]}})
    assert reply.status == 200 and reply.json()["result"] in ("created", "exists")
    assert reply.json()["id"].startswith("_design/")
    found = call(d, domain, token, "POST", "/data/io.cozy.contacts/_find",
                 {"selector": {"city": "Paris"}, "limit": 1}).json()
    assert (len(found["docs"]), found["limit"], found["next"]) == (1, 1, True) and found["bookmark"]
    more = call(d, domain, token, "POST", "/data/io.cozy.contacts/_find",
                {"selector": {"city": "Paris"}, "limit": 1, "bookmark": found["bookmark"]}).json()
    assert more["docs"][0]["_id"] != found["docs"][0]["_id"]
    big = call(d, domain, token, "POST", "/data/io.cozy.contacts/_find",
               {"selector": {"city": "Paris"}, "limit": 5000}).json()
    assert (big["limit"], big["next"], len(big["docs"])) == (100, False, 2)
    reply = call(d, domain, token, "POST", "/data/io.cozy.contacts/_find",
                 {"selector": {"rank": {"$gt": -1}}, "sort": [{"rank": "asc"}]})
    assert (reply.status, reply.json()) == (400, {"ok": False, "status": "400", "error": "no_index",
                                                  "reason": "no matching index found, create an index"})


@T.row(f"{F} §3", "reserved doctypes: io.cozy.files readable, not writable; io.cozy.permissions neither")
def _(d: Double):
    domain, token = instance(d, scope="io.cozy.files io.cozy.permissions io.cozy.contacts")
    reply = call(d, domain, token, "POST", "/data/io.cozy.files/", {"x": 1})
    assert (reply.status, reply.json()) == (403, {"error": "code=403, message=reserved doctype io.cozy.files "
                                                           "unwritable"})
    assert call(d, domain, token, "GET", "/data/io.cozy.files/io.cozy.files.root-dir").status == 200
    reply = call(d, domain, token, "GET", "/data/io.cozy.permissions/x")
    assert reply.json() == {"error": "code=403, message=reserved doctype io.cozy.permissions unreadable"}


@T.row(f"{F} §3", "invalid doctype name: 403 `<x> is not a valid doctype name`")
def _(d: Double):
    domain, token = instance(d)
    reply = call(d, domain, token, "POST", "/data/IO.Cozy..x/", {"x": 1})
    assert (reply.status, reply.json()) == (403, {"error": "code=403, message=IO.Cozy..x is not a valid doctype "
                                                           "name"})


@T.row(f"{F} §0 / §4", "data auth errors: {\"error\": \"code=401, message=No token in request\"}, 403 Forbidden")
def _(d: Double):
    domain, token = instance(d, scope="io.cozy.contacts")
    reply = call(d, domain, None, "GET", "/data/io.cozy.contacts/x")
    assert (reply.status, reply.json()) == (401, {"error": "code=401, message=No token in request"})
    reply = call(d, domain, token, "POST", "/data/io.cozy.photos.albums/", {"x": 1})
    assert (reply.status, reply.json()) == (403, {"error": "code=403, message=Forbidden"})


@T.row(f"{F} §4", "scope with values: a rule on one id allows that doc only; _all_docs needs the whole doctype")
def _(d: Double):
    domain, token = instance(d)
    body = created(d, domain, token)
    narrow = d.token(domain, scope=f"io.cozy.contacts:GET:{body['id']}")
    assert call(d, domain, narrow, "GET", f"/data/io.cozy.contacts/{body['id']}").status == 200
    assert call(d, domain, narrow, "GET", "/data/io.cozy.contacts/other").status == 403
    assert call(d, domain, narrow, "GET", "/data/io.cozy.contacts/_all_docs").status == 403
    wildcard = d.token(domain, scope="io.cozy.photos.*")
    assert call(d, domain, wildcard, "POST", "/data/io.cozy.photos.albums/", {"name": "x"}).status == 201


# --- read from cozy-stack's source at db1163854 (docs/double.md, "Public API")
W = "cozy-stack web/data/"


@T.row(f"{W}replication.go changesFeed", "_changes: CouchDB's feed; an unknown parameter: 400 `Bad Request(400): "
       "Unsupported query parameter`; a bad limit: 400")
def _(d: Double):
    domain, token = instance(d)
    doc = created(d, domain, token)
    feed = call(d, domain, token, "GET", "/data/io.cozy.contacts/_changes", query={"include_docs": "true"})
    assert feed.status == 200 and "last_seq" in feed.json()
    assert any(r["id"] == doc["id"] and r["doc"]["fn"] == "Ann" for r in feed.json()["results"])
    since = call(d, domain, token, "GET", "/data/io.cozy.contacts/_changes", query={"since": feed.json()["last_seq"]})
    assert since.json()["results"] == []
    reply = call(d, domain, token, "GET", "/data/io.cozy.contacts/_changes", query={"nope": "1"})
    assert (reply.status, reply.json()) == (400, {"error": "Bad Request(400): Unsupported query parameter 'nope'"})
    assert call(d, domain, token, "GET", "/data/io.cozy.contacts/_changes", query={"limit": "x"}).status == 400
    narrow = d.token(domain, scope=f"io.cozy.contacts:GET:{doc['id']}")
    assert call(d, domain, narrow, "GET", "/data/io.cozy.contacts/_changes").status == 403


@T.row(f"{W}replication.go bulkDocs", "_bulk_docs: the whole doctype with POST; the database made if missing; "
       "CouchDB's answer")
def _(d: Double):
    domain, token = instance(d)
    reply = call(d, domain, token, "POST", "/data/io.cozy.photos.albums/_bulk_docs",
                 {"docs": [{"_id": "a1", "name": "one"}, {"_id": "a2", "name": "two"}]})
    assert reply.status == 201 and [r["id"] for r in reply.json()] == ["a1", "a2"]
    assert all(r["ok"] for r in reply.json())
    got = call(d, domain, token, "GET", "/data/io.cozy.photos.albums/a2").json()
    assert got["name"] == "two"
    reply = call(d, domain, token, "POST", "/data/io.cozy.files/_bulk_docs", {"docs": []})
    assert reply.json() == {"error": "code=403, message=reserved doctype io.cozy.files unwritable"}


@T.row(f"{W}data.go getDesignDocs, getDesignDoc, deleteDesignDoc, copyDesignDoc", "the design documents of a "
       "doctype; DELETE needs a rev; copy needs a Destination header (201)")
def _(d: Double):
    domain, token = instance(d)
    created(d, domain, token)
    index = call(d, domain, token, "POST", "/data/io.cozy.contacts/_index",
                 {"index": {"fields": ["fn"]}, "ddoc": "by-fn"})
    assert index.status == 200
    listed = call(d, domain, token, "GET", "/data/io.cozy.contacts/_design_docs").json()
    assert [r["id"] for r in listed["rows"]] == ["_design/by-fn"]
    ddoc = call(d, domain, token, "GET", "/data/io.cozy.contacts/_design/by-fn")
    assert ddoc.status == 200 and ddoc.json()["_id"] == "_design/by-fn"
    reply = call(d, domain, token, "POST", "/data/io.cozy.contacts/_design/by-fn/copy")
    assert (reply.status, reply.json()) == (400, "You must set a Destination header")
    reply = call(d, domain, token, "POST", "/data/io.cozy.contacts/_design/by-fn/copy",
                 headers={"Destination": "_design/by-fn-2"})
    assert reply.status == 201 and reply.json()["id"] == "_design/by-fn-2"
    reply = call(d, domain, token, "DELETE", "/data/io.cozy.contacts/_design/by-fn-2")
    assert (reply.status, reply.json()) == (400, {"error": "You must pass a rev param"})
    rev = call(d, domain, token, "GET", "/data/io.cozy.contacts/_design/by-fn-2").json()["_rev"]
    reply = call(d, domain, token, "DELETE", "/data/io.cozy.contacts/_design/by-fn-2", query={"rev": rev})
    assert reply.status == 200


@T.row(f"{W}data.go allDocs, normalDocs, findDocuments; replication.go proxy", "a database never written: "
       "_all_docs passes CouchDB's 404 on; _normal_docs and _find answer it as a CouchDB error")
def _(d: Double):
    domain, token = instance(d)
    reply = call(d, domain, token, "GET", "/data/io.cozy.photos.albums/_all_docs")
    assert (reply.status, reply.json()) == (404, {"error": "not_found", "reason": "Database does not exist."})
    couch_error = {"ok": False, "status": "404", "error": "not_found", "reason": "Database does not exist."}
    reply = call(d, domain, token, "GET", "/data/io.cozy.photos.albums/_normal_docs")
    assert (reply.status, reply.json()) == (404, couch_error)
    reply = call(d, domain, token, "POST", "/data/io.cozy.photos.albums/_find", {"selector": {"x": 1}})
    assert (reply.status, reply.json()) == (404, couch_error)


@T.row(f"{W}data.go dataAPIWelcome, allDoctypes, DeleteDatabase; replication.go dbStatus, createDB",
       "GET /data/ welcomes; _all_doctypes needs io.cozy.doctypes; a database made, shown and deleted")
def _(d: Double):
    domain, token = instance(d, scope="io.cozy.contacts io.cozy.doctypes io.cozy.photos.albums")
    assert call(d, domain, None, "GET", "/data/").json() == {"message": "welcome to a cozy API"}
    doctypes = call(d, domain, token, "GET", "/data/_all_doctypes").json()
    assert "io.cozy.contacts" in doctypes and "io.cozy.settings" in doctypes
    assert "io.cozy.permissions" not in doctypes and "io.cozy.sharings" not in doctypes  # CheckReadable: none
    narrow = d.token(domain, scope="io.cozy.contacts")
    assert call(d, domain, narrow, "GET", "/data/_all_doctypes").status == 403
    made = call(d, domain, token, "PUT", "/data/io.cozy.photos.albums/")
    assert made.status == 201 and made.json() == {"ok": True}
    assert call(d, domain, token, "GET", "/data/io.cozy.photos.albums/").status == 200
    gone = call(d, domain, token, "DELETE", "/data/io.cozy.photos.albums/")
    assert (gone.status, gone.json()) == (200, {"ok": True, "deleted": True})
    reply = call(d, domain, token, "GET", "/data/io.cozy.photos.albums/")
    assert reply.status == 404 and reply.json()["error"] == "not_found"


@pytest.mark.parametrize("check", T.rows)
@pytest.mark.parametrize("mode", ["nested", "flat"])
def test_data(doubles, mode, check):
    check(doubles[mode])
