"""The admin API (cozy-stack.md §2, §1.2 server side, §1.6 server side, §1.8, §2.5, §7), in both modes."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
import zipfile
from urllib.parse import quote

import pytest

from .conftest import Double, unique
from .table import Table

T = Table()
S = "cozy-stack.md"
JSONAPI = "application/vnd.api+json"


def created(double: Double, **params) -> tuple[str, dict]:
    domain = params.pop("domain", None) or unique() + ".cozy.test"
    reply = double.create(domain, **params)
    assert reply.status == 201, reply.text
    return domain, reply.json()["data"]


def couch(double: Double, method: str, path: str) -> tuple[int, dict]:
    reply = double.request(double.couch_port, method, path)
    return reply.status, reply.json()


def db(prefix: str, doctype: str) -> str:
    return "/" + quote(prefix + "/" + doctype.replace(".", "-"), safe="")


def jsonapi_error(reply, status: int, title: str, detail: str, source: dict | None = None) -> None:
    assert reply.status == status, reply.text
    assert reply.header("Content-Type").startswith(JSONAPI)
    assert reply.json() == {"errors": [{"status": str(status), "title": title, "detail": detail,
                                        "source": source or {}}]}


# --- §2.1 listener, auth, formats
@T.row(f"{S} §2.1", "no Authorization header: 401 plain text `missing basic auth`")
def _(d: Double):
    reply = d.admin("GET", "/instances", auth=False)
    assert (reply.status, reply.text) == (401, "missing basic auth")
    assert reply.header("Content-Type").startswith("text/plain")


@T.row(f"{S} §2.1", "wrong password: 403 plain text `bad passphrase`")
def _(d: Double):
    reply = d.admin("GET", "/instances", auth=False, headers=d.basic("not-it"))
    assert (reply.status, reply.text) == (403, "bad passphrase")


@T.row(f"{S} §2.1", "echo errors are {\"error\": …} with Accept: application/json")
def _(d: Double):
    reply = d.admin("GET", "/instances", auth=False, headers={**d.basic("nope"), "Accept": "application/json"})
    assert (reply.status, reply.json()) == (403, {"error": "bad passphrase"})
    reply = d.admin("GET", "/instances", auth=False, headers={"Accept": "application/json"})
    assert (reply.status, reply.json()) == (401, {"error": "missing basic auth"})


@T.row(f"{S} §2.1 / §9.5", "only the password is checked: any user name passes")
def _(d: Double):
    raw = base64.b64encode(("someone:" + d.passphrase).encode()).decode()
    assert d.admin("GET", "/instances", auth=False, headers={"Authorization": "Basic " + raw}).status == 200


@T.row(f"{S} §2.2", "GET /version on the admin port: version, build_mode, build_time, runtime_version")
def _(d: Double):
    reply = d.admin("GET", "/version")
    assert reply.status == 200
    assert set(reply.json()) == {"version", "build_mode", "build_time", "runtime_version"}
    assert d.admin("GET", "/version", auth=False).status == 401


# --- §2.3 POST /instances
@T.row(f"{S} §2.3", "201 JSON:API resource: type, id, attributes, meta.rev, links.self; no secrets")
def _(d: Double):
    domain, data = created(d, Locale="fr")
    assert data["type"] == "instances"
    assert data["links"] == {"self": "/instances/" + data["id"]}
    assert data["meta"]["rev"].startswith("2-")
    attrs = data["attributes"]
    assert attrs["domain"] == domain and attrs["locale"] == "fr" and attrs["indexes_version"] == 38
    assert attrs["password_defined"] is False and "onboarding_finished" not in attrs
    assert len(base64.b64decode(attrs["register_token"])) == 16
    for hidden in ("passphrase_hash", "session_secret", "oauth_secret", "cli_secret", "_id", "_rev"):
        assert hidden not in attrs


@T.row(f"{S} §1.2", "prefix = cozy + hex(sha256(domain)[:16]); alice.example.org's is the reference's")
def _(d: Double):
    _, data = created(d, domain=unique("alice") + ".example.org")
    domain = data["attributes"]["domain"]
    assert data["attributes"]["prefix"] == "cozy" + hashlib.sha256(domain.encode()).hexdigest()[:32]
    assert "cozy" + hashlib.sha256(b"alice.example.org").hexdigest()[:32] == "cozycf290f3ac68ab4e8157083b9a0274c67"


@T.row(f"{S} §2.3", "parameters are case-sensitive: `domain=` is not `Domain=` (422)")
def _(d: Double):
    reply = d.admin("POST", "/instances", {"domain": unique() + ".cozy.test"})
    jsonapi_error(reply, 422, "Invalid Parameter", "Domain name contains illegal characters", {"parameter": "domain"})


@T.row(f"{S} §2.3", "Locale defaults to en; the domain is trimmed and lowercased")
def _(d: Double):
    name = unique()
    domain, data = created(d, domain=f" {name.upper()}.Cozy.Test ")
    assert data["attributes"]["domain"] == f"{name}.cozy.test"
    assert data["attributes"]["locale"] == "en"


@T.row(f"{S} §2.3", "Passphrase: onboarded, no register_token, password_defined true")
def _(d: Double):
    _, data = created(d, Passphrase="instance pass")
    attrs = data["attributes"]
    assert attrs["onboarding_finished"] is True and attrs["password_defined"] is True
    assert "register_token" not in attrs


@T.row(f"{S} §2.3", "DiskQuota in bytes: disk_quota is a string")
def _(d: Double):
    _, data = created(d, DiskQuota="5000000000")
    assert data["attributes"]["disk_quota"] == "5000000000"


@T.row(f"{S} §2.3", "a port is allowed in a domain (cozy.localhost:8080)")
def _(d: Double):
    _, data = created(d, domain=unique() + ".localhost:8080")
    assert data["attributes"]["domain"].endswith(".localhost:8080")


@T.row(f"{S} §2.1 / §1.2", "409 Conflict `Instance already exists` for a domain or an alias")
def _(d: Double):
    domain, _ = created(d, DomainAliases=(alias := unique() + ".cozy.test"))
    jsonapi_error(d.create(domain), 409, "Conflict", "Instance already exists")
    jsonapi_error(d.create(alias), 409, "Conflict", "Instance already exists")


@pytest.mark.parametrize("bad", ["a b.cozy.test", "a/b.cozy.test", "a,b.cozy.test", "a;b.cozy.test", "a&b.cozy.test",
                                 "a?b.cozy.test", "a#b.cozy.test", "a@b.cozy.test", "a|b.cozy.test", "a=b.cozy.test",
                                 "a'b.cozy.test", 'a"b.cozy.test', "a\tb.cozy.test", ".cozy.test", ".", "..", ""])
@pytest.mark.parametrize("mode", ["nested", "flat"])
def test_illegal_domains(doubles, mode, bad):
    """cozy-stack.md §1.2 validateDomain: each illegal character, a leading dot, `.`, `..` → 422."""
    reply = doubles[mode].create(bad)
    jsonapi_error(reply, 422, "Invalid Parameter", "Domain name contains illegal characters", {"parameter": "domain"})


@T.row(f"{S} §1.2 / §9.11", "a `-` in the first label: 422 in flat mode, 201 in nested mode")
def _(d: Double):
    domain = unique("alice-") + ".cozy.test"
    reply = d.create(domain)
    if d.mode == "flat":
        jsonapi_error(reply, 422, "Invalid Parameter", "Domain name contains illegal characters",
                      {"parameter": "domain"})
        jsonapi_error(d.create(unique() + ".cozy.test", DomainAliases=unique("bob-") + ".cozy.test"), 422,
                      "Invalid Parameter", "Domain name contains illegal characters", {"parameter": "domain"})
    else:
        assert reply.status == 201, reply.text


@T.row(f"{S} §1.2", "creation makes the instance doc, the databases, settings, the myself contact, the VFS tree")
def _(d: Double):
    domain, data = created(d, Email="owner@example.org", PublicName="Owner", Timezone="Europe/Paris",
                           Apps="drive,photos")
    prefix = data["attributes"]["prefix"]
    status, doc = couch(d, "GET", "/" + quote("global/instances", safe="") + "/" + data["id"])
    assert status == 200 and doc["domain"] == domain and doc["prefix"] == prefix
    for doctype in ("io.cozy.files", "io.cozy.apps", "io.cozy.konnectors", "io.cozy.oauth.clients", "io.cozy.jobs",
                    "io.cozy.triggers", "io.cozy.permissions", "io.cozy.sharings", "com.bitwarden.ciphers",
                    "io.cozy.sessions.logins", "io.cozy.notifications"):
        assert couch(d, "GET", db(prefix, doctype))[0] == 200, doctype
    status, settings = couch(d, "GET", db(prefix, "io.cozy.settings") + "/io.cozy.settings.instance")
    assert (settings["email"], settings["public_name"], settings["tz"]) == ("owner@example.org", "Owner",
                                                                            "Europe/Paris")
    status, contacts = couch(d, "GET", db(prefix, "io.cozy.contacts") + "/_all_docs?include_docs=true")
    myself = [r["doc"] for r in contacts["rows"] if r["doc"].get("me")]
    assert len(myself) == 1 and myself[0]["email"] == [{"address": "owner@example.org", "primary": True}]
    status, files = couch(d, "GET", db(prefix, "io.cozy.files") + "/_all_docs?include_docs=true")
    paths = {r["doc"].get("path") for r in files["rows"] if r["doc"].get("type") == "directory"}
    assert {"/", "/.cozy_trash", "/Administrative", "/Photos"} <= paths
    assert (d.directory / "storage" / domain / "Administrative").is_dir()
    status, apps = couch(d, "GET", db(prefix, "io.cozy.apps") + "/_all_docs")
    assert {r["id"] for r in apps["rows"]} >= {"io.cozy.apps/drive", "io.cozy.apps/photos"}


@T.row(f"{S} §1.2", "folder names follow the locale (fr: /Administratif)")
def _(d: Double):
    domain, data = created(d, Locale="fr")
    assert (d.directory / "storage" / domain / "Administratif").is_dir()


# --- §2.2 / §2.4 list, show, modify, destroy
@T.row(f"{S} §2.1 / §2.2", "GET /instances: data list with meta.count; page[limit] adds links.next")
def _(d: Double):
    created(d)
    created(d)
    reply = d.admin("GET", "/instances")
    body = reply.json()
    assert reply.status == 200 and body["meta"]["count"] == len(body["data"]) >= 2
    page = d.admin("GET", "/instances", {"page[limit]": "1"}).json()
    assert len(page["data"]) == 1 and page["links"]["next"].startswith("/instances?")
    following = d.admin("GET", page["links"]["next"].split("?")[0] + "?" + page["links"]["next"].split("?")[1])
    assert following.json()["data"][0]["id"] != page["data"][0]["id"]


@T.row(f"{S} §2.2", "GET /instances/count")
def _(d: Double):
    count = d.admin("GET", "/instances/count").json()["count"]
    assert count == len(d.admin("GET", "/instances").json()["data"])


@T.row(f"{S} §2.4", "GET /instances/:domain: the resource; by an alias too; register_token kept")
def _(d: Double):
    alias = unique() + ".cozy.test"
    domain, data = created(d, DomainAliases=alias)
    for name in (domain, alias):
        shown = d.admin("GET", "/instances/" + name).json()["data"]
        assert shown["id"] == data["id"] and shown["attributes"]["register_token"]
        assert "cli_secret" not in shown["attributes"]


@T.row(f"{S} §2.1 / §2.4", "unknown domain: 404 Not Found `Instance not found` (GET, PATCH, DELETE, token)")
def _(d: Double):
    for method in ("GET", "PATCH", "DELETE"):
        jsonapi_error(d.admin(method, "/instances/nobody.cozy.test"), 404, "Not Found", "Instance not found")
    reply = d.admin("POST", "/instances/token", {"Domain": "nobody.cozy.test", "Audience": "cli", "Scope": "x"})
    jsonapi_error(reply, 404, "Not Found", "Instance not found")


@T.row(f"{S} §2.4", "PATCH with query parameters: 200, the full object, secrets kept (§9.4); settings updated")
def _(d: Double):
    domain, data = created(d)
    reply = d.admin("PATCH", "/instances/" + domain, {"Email": "new@example.org", "Locale": "fr",
                                                      "PublicName": "New"})
    assert reply.status == 200
    attrs = reply.json()["data"]["attributes"]
    assert attrs["locale"] == "fr" and "cli_secret" in attrs and "session_secret" in attrs
    _, settings = couch(d, "GET", db(data["attributes"]["prefix"], "io.cozy.settings") + "/io.cozy.settings.instance")
    assert settings["email"] == "new@example.org" and settings["public_name"] == "New"


@T.row(f"{S} §2.4", "blocking: Blocked=true&BlockingReason=PAYMENT_FAILED, then Blocked=false")
def _(d: Double):
    domain, _ = created(d)
    attrs = d.admin("PATCH", "/instances/" + domain, {"Blocked": "true", "BlockingReason": "PAYMENT_FAILED"}).json()
    assert attrs["data"]["attributes"]["blocked"] is True
    assert attrs["data"]["attributes"]["blocking_reason"] == "PAYMENT_FAILED"
    attrs = d.admin("PATCH", "/instances/" + domain, {"Blocked": "false"}).json()["data"]["attributes"]
    assert "blocked" not in attrs


@T.row(f"{S} §2.4 / §1.5", "quota: PATCH DiskQuota=<bytes> sets it, DiskQuota=-1 removes it")
def _(d: Double):
    domain, _ = created(d)
    attrs = d.admin("PATCH", "/instances/" + domain, {"DiskQuota": "3000000000"}).json()["data"]["attributes"]
    assert attrs["disk_quota"] == "3000000000"
    attrs = d.admin("PATCH", "/instances/" + domain, {"DiskQuota": "-1"}).json()["data"]["attributes"]
    assert "disk_quota" not in attrs


@T.row(f"{S} §2.4", "PATCH DomainAliases makes the instance answer to the alias")
def _(d: Double):
    domain, data = created(d)
    alias = unique() + ".cozy.test"
    d.admin("PATCH", "/instances/" + domain, {"DomainAliases": alias})
    assert d.admin("GET", "/instances/" + alias).json()["data"]["id"] == data["id"]


@T.row(f"{S} §2.4", "Deleting=true only flips that flag")
def _(d: Double):
    domain, _ = created(d)
    attrs = d.admin("PATCH", "/instances/" + domain, {"Deleting": "true", "Locale": "de"}).json()["data"]["attributes"]
    assert attrs["deleting"] is True and attrs["locale"] == "en"


@T.row(f"{S} §2.4 / §1.6", "DELETE: 204, then 404; databases and files are gone")
def _(d: Double):
    domain, data = created(d)
    prefix = data["attributes"]["prefix"]
    reply = d.admin("DELETE", "/instances/" + domain)
    assert (reply.status, reply.body) == (204, b"")
    assert d.admin("GET", "/instances/" + domain).status == 404
    assert couch(d, "GET", db(prefix, "io.cozy.files"))[0] == 404
    assert couch(d, "GET", db(prefix, "io.cozy.settings"))[0] == 404
    assert not (d.directory / "storage" / domain).exists()


@T.row(f"{S} §1.6", "DELETE of an instance whose deletion was requested: 500")
def _(d: Double):
    domain, _ = created(d)
    d.admin("PATCH", "/instances/" + domain, {"Deleting": "true"})
    reply = d.admin("DELETE", "/instances/" + domain)
    assert reply.status == 500 and reply.json()["errors"][0]["detail"] == "The deletion has already been requested"


INSTANCES_GO = "web/instances/instances.go"


@T.row(f"{INSTANCES_GO} diskUsage / diskUsageResult",
       "disk-usage: numbers as strings (doc_count a number); zero fields omitted but used; trashed with include=trash")
def _(d: Double):
    domain, _ = created(d, DiskQuota="1000000")
    body = d.admin("GET", f"/instances/{domain}/disk-usage", {"include": "trash"}).json()
    assert body == {"used": "0", "quota": "1000000", "doc_count": 6}  # no trashed, files, versions…: zero
    token = d.token(domain)
    d.public("POST", "/files/", domain, token, {"Type": "file", "Name": "u.txt"}, body=b"abc")
    body = d.admin("GET", f"/instances/{domain}/disk-usage").json()
    assert body == {"used": "3", "quota": "1000000", "doc_count": 7, "files": "3"}
    assert list(body) == ["used", "quota", "doc_count", "files"]  # the struct's order
    other, _ = created(d)
    assert d.admin("GET", f"/instances/{other}/disk-usage").json() == {"used": "0", "doc_count": 6}


@T.row(f"{INSTANCES_GO} lastActivity", "last-activity: 2018-01-01 at least; the latest session, login or OAuth client")
def _(d: Double):
    domain, data = created(d)
    assert d.admin("GET", f"/instances/{domain}/last-activity").json() == {"last-activity": "2018-01-01"}
    prefix = data["attributes"]["prefix"]
    d.request(d.couch_port, "PUT", db(prefix, "io.cozy.sessions"))
    d.request(d.couch_port, "PUT", db(prefix, "io.cozy.sessions") + "/s1",
              body=b'{"last_seen": "2026-03-04T05:06:07Z"}', headers={"Content-Type": "application/json"})
    d.request(d.couch_port, "PUT", db(prefix, "io.cozy.oauth.clients") + "/c1",
              body=b'{"client_kind": "sharing", "synchronized_at": "2026-09-09T00:00:00Z"}',
              headers={"Content-Type": "application/json"})
    assert d.admin("GET", f"/instances/{domain}/last-activity").json() == {"last-activity": "2026-03-04"}
    reply = d.admin("GET", "/instances/nobody.cozy.test/last-activity")
    assert reply.status == 404


@T.row(f"{INSTANCES_GO} cleanSessions", "DELETE /instances/:domain/sessions: 204; both session databases gone")
def _(d: Double):
    domain, data = created(d)
    prefix = data["attributes"]["prefix"]
    assert d.request(d.couch_port, "GET", db(prefix, "io.cozy.sessions.logins")).status == 200
    assert d.admin("DELETE", f"/instances/{domain}/sessions").status == 204
    assert d.request(d.couch_port, "GET", db(prefix, "io.cozy.sessions.logins")).status == 404
    assert d.admin("DELETE", f"/instances/{domain}/sessions").status == 204


@T.row("web/instances/checks.go fsckHandler / model/vfs/vfsafero/fsck.go",
       "fsck: 200 and no line when sound; FsckLog lines (content_mismatch, filesystem_missing)")
def _(d: Double):
    domain, _ = created(d)
    token = d.token(domain)
    d.public("POST", "/files/", domain, token, {"Type": "file", "Name": "f.txt"}, body=b"same size")
    reply = d.admin("GET", f"/instances/{domain}/fsck")
    assert (reply.status, reply.body) == (200, b"")
    (d.directory / "storage" / domain / "f.txt").write_bytes(b"SAME SIZE")
    logs = [json.loads(line) for line in d.admin("GET", f"/instances/{domain}/fsck").text.splitlines()]
    assert [(log["type"], log["is_file"], log["file_doc"]["name"]) for log in logs] == [
        ("content_mismatch", True, "f.txt")]
    assert logs[0]["content_mismatch"]["size_file"] == logs[0]["content_mismatch"]["size_index"] == 9
    assert d.admin("GET", f"/instances/{domain}/fsck", {"IndexIntegrity": "true"}).body == b""


@T.row("web/realtime/realtime.go Ws / client/realtime.go",
       "admin /realtime/: WebSocket, SUBSCRIBE io.cozy.exports, the export's CREATED then UPDATED done")
def _(d: Double):
    from stackdouble import realtime

    domain, _ = created(d)
    socket = realtime.Client("127.0.0.1", d.admin_port, d.basic()["Authorization"], timeout=20)
    try:
        socket.send({"method": "NOPE", "payload": {}})
        assert socket.receive()["payload"]["status"] == "405 Method Not Allowed"
        socket.subscribe("io.cozy.exports")
        time.sleep(0.2)
        d.admin("POST", f"/instances/{domain}/export", {"admin-req": "true"})
        seen = []
        while not seen or seen[-1][1] != "done":
            event = socket.receive()
            if event["payload"]["doc"]["domain"] == domain:
                seen.append((event["event"], event["payload"]["doc"]["state"]))
        assert seen[:2] == [("CREATED", "exporting"), ("UPDATED", "done")]
        assert socket.receive()["event"] == "CREATED"  # NotifyRealtime for an admin request
    finally:
        socket.close()
    assert d.admin("GET", "/realtime/", auth=False).status == 401


@T.row(f"{S} §2.2", "GET /instances/:domain/prefix: a JSON string")
def _(d: Double):
    domain, data = created(d)
    assert d.admin("GET", f"/instances/{domain}/prefix").json() == data["attributes"]["prefix"]


# --- tokens (§1.8; files-data §4)
@T.row(f"{S} §2.2 / files-data §4", "POST /instances/token: 200 text/plain JWT for each audience")
def _(d: Double):
    domain, _ = created(d)
    for audience in ("cli", "app", "konn", "access", "refresh"):
        reply = d.admin("POST", "/instances/token", {"Domain": domain, "Audience": audience, "Scope": "io.cozy.files",
                                                     "Subject": "drive"})
        assert reply.status == 200 and reply.header("Content-Type").startswith("text/plain")
        header, claims, _ = reply.text.split(".")
        payload = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
        assert payload["aud"] == audience and payload["iss"] == domain


@T.row(f"{S} §2.2", "unknown audience: 400 `Unknown audience x` (plain text)")
def _(d: Double):
    domain, _ = created(d)
    reply = d.admin("POST", "/instances/token", {"Domain": domain, "Audience": "x", "Scope": "io.cozy.files"})
    assert (reply.status, reply.text) == (400, "Unknown audience x")


@T.row("files-data §4", "Expire shifts iat: the CLI token expires Expire after minting (30 min by default)")
def _(d: Double):
    domain, _ = created(d)

    def iat(**params) -> int:
        token = d.token(domain, **params)
        claims = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["iat"]

    now = time.time()
    assert abs(iat() - now) < 5
    assert abs(iat(Expire="2h") - (now + 90 * 60)) < 5


# --- export / import (§2.5, §7; cozy-stack's web/instances/move.go, model/move, worker/moves)
MOVE = "web/instances/move.go"


@T.row(f"{MOVE} exporter", "POST …/export?admin-req=true: 202 + the queued job; admin-req not a bool: 500 ParseBool")
def _(d: Double):
    domain, _ = created(d)
    reply = d.admin("POST", f"/instances/{domain}/export", {"admin-req": "true"})
    assert reply.status == 202
    job = reply.json()
    assert job["worker"] == "export" and job["state"] == "queued" and job["domain"] == domain
    assert job["message"]["admin_req"] is True and job["started_at"] == "0001-01-01T00:00:00Z"
    jsonapi_error(d.admin("POST", f"/instances/{domain}/export"), 500, "Unqualified error",
                  'strconv.ParseBool: parsing "": invalid syntax')
    jsonapi_error(d.admin("POST", "/instances/nobody.cozy.test/export", {"admin-req": "false"}), 404, "Not Found",
                  "Instance not found")


def export_docs(d: Double, domain: str) -> list[dict]:
    status, body = couch(d, "GET", db("global", "io.cozy.exports") + "/_all_docs?include_docs=true")
    if status == 404:
        return []
    return [row["doc"] for row in body["rows"] if row["doc"].get("domain") == domain]


def exported(d: Double, domain: str) -> dict:
    """Start an export and wait for its io.cozy.exports document (global database) to be done."""
    before = {doc["_id"] for doc in export_docs(d, domain)}
    job = d.admin("POST", f"/instances/{domain}/export", {"admin-req": "true"}).json()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done = [doc for doc in export_docs(d, domain) if doc["state"] == "done" and doc["_id"] not in before]
        if done:
            assert done[0]["_id"] != job["_id"]  # the export has its own id
            return done[0]
        time.sleep(0.1)
    pytest.fail("the export did not finish")


@T.row("model/move/export.go CreateExport / doc.go ExportDoc",
       "the export's document is in global/io.cozy.exports; its JSON in <fs>/exports/<domain>/<id>tar.gz")
def _(d: Double):
    import tarfile

    domain, _ = created(d)
    doc = exported(d, domain)
    assert doc["state"] == "done" and doc["parts_cursors"] == [] and doc["parts_size"] == 1024 ** 3
    assert doc["total_size"] > 0 and doc["creation_duration"] > 0 and doc["expires_at"] > doc["created_at"]
    archive = d.directory / "storage" / "exports" / domain / (doc["_id"] + "tar.gz")
    with tarfile.open(archive, "r:gz") as tar:
        names = tar.getnames()
        instance = json.loads(tar.extractfile("instance.json").read())
    assert names[0] == "instance.json" and "session_secret" not in instance and instance["domain"] == domain
    assert "io.cozy.settings/io.cozy.settings.instance.json" in names
    assert any(n.startswith("io.cozy.files/") for n in names)
    assert not any(n.startswith("io.cozy.exports/") for n in names)


@T.row(f"{MOVE} dataExporter / model/move/export.go ExportCopyData",
       "GET …/exports/:id/data: attachment \"<domain>.zip\"; a file's document then its content; unknown id: 404")
def _(d: Double):
    domain, _ = created(d)
    token = d.token(domain)
    d.public("POST", "/files/", domain, token, {"Type": "file", "Name": "hello.txt"}, body=b"hello")
    export_id = exported(d, domain)["_id"]
    reply = d.admin("GET", f"/instances/{domain}/exports/{export_id}/data", {"cursor": ""})
    assert reply.header("Content-Type") == "application/zip"
    assert reply.header("Content-Disposition") == f'attachment; filename="{domain}.zip"'
    names = zipfile.ZipFile(io.BytesIO(reply.body)).namelist()
    assert names[0] == "My Cozy/Data/instance.json"
    at = names.index("My Cozy/Files/hello.txt")
    assert names[at - 1].startswith("My Cozy/Data/io.cozy.files/") and names[at - 1].endswith(".json")
    assert "My Cozy/Data/io.cozy.settings/io.cozy.settings.instance.json" in names
    reply = d.admin("GET", f"/instances/{domain}/exports/nosuchexport/data", headers={"Accept": "application/json"})
    assert (reply.status, reply.json()) == (404, {"error": "exports: not found"})
    reply = d.admin("GET", f"/instances/{domain}/exports/{export_id}/data", {"cursor": "bad"},
                    headers={"Accept": "application/json"})
    assert (reply.status, reply.json()) == (400, {"error": "export: cursor is invalid"})


def manifest_url(d: Double, source: str, export_id: str) -> str:
    """The link's MAC (crypto.EncodeAuthMessage with the instance's session secret): the double's own function."""
    from stackdouble import move

    doc = d.admin("GET", "/instances/" + source).json()
    raw = json.loads(d.request(d.couch_port, "GET", "/" + quote("global/instances", safe="") + "/" +
                               doc["data"]["id"]).body)
    return f"http://{source}/move/exports/{move.encode_mac(raw, export_id)}"


def public_source(d: Double) -> str:
    """An instance whose domain is the double's public address, so that another can fetch from it (no DNS)."""
    source = f"127.0.0.1:{d.public_port}"
    if d.admin("GET", "/instances/" + source).status == 404:
        created(d, domain=source)
    return source


@T.row("web/move/move.go exportHandler / exportDataHandler",
       "GET /move/exports/:mac: the export document; data: `attachment; filename=My Cozy.zip`; bad MAC: 401")
def _(d: Double):
    source = public_source(d)
    export_id = exported(d, source)["_id"]
    url = manifest_url(d, source, export_id)
    path = url.split(source, 1)[1]
    manifest = d.public("GET", path, source).json()["data"]
    assert (manifest["type"], manifest["id"], manifest["attributes"]["state"]) == ("io.cozy.exports", export_id, "done")
    data = d.public("GET", path.replace("/move/exports/", "/move/exports/data/"), source)
    assert data.header("Content-Disposition") == "attachment; filename=My Cozy.zip"
    assert "My Cozy/Data/instance.json" in zipfile.ZipFile(io.BytesIO(data.body)).namelist()
    forged = base64.urlsafe_b64encode(b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").decode()
    assert d.public("GET", "/move/exports/" + forged, source).status == 401


@T.row(f"{MOVE} importer / worker/moves ImportWorker / model/move/importer.go",
       "POST …/import?manifest_url=…: 204; the target is reset, gets the files and documents, is unblocked")
def _(d: Double):
    source = public_source(d)
    token = d.token(source)
    name = unique() + ".txt"
    d.public("POST", "/files/", source, token, {"Type": "file", "Name": name}, body=b"moved")
    contact = d.public("POST", "/data/io.cozy.contacts/", source, token, body=b'{"fullname": "Moved Contact"}',
                       headers={"Content-Type": "application/json"}).json()["id"]
    manifest = manifest_url(d, source, exported(d, source)["_id"])
    target, _ = created(d)
    target_token = d.token(target)
    d.public("POST", "/files/", target, target_token, {"Type": "file", "Name": "gone.txt"}, body=b"reset")
    reply = d.admin("POST", f"/instances/{target}/import", {"manifest_url": manifest})
    assert (reply.status, reply.body) == (204, b"")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        attrs = d.admin("GET", "/instances/" + target).json()["data"]["attributes"]
        got = d.public("GET", "/files/download", target, target_token, {"Path": "/" + name})
        if got.status == 200 and not attrs.get("blocked"):
            assert got.body == b"moved"
            break
        time.sleep(0.2)
    else:
        pytest.fail("the import did not bring the file")
    assert d.public("GET", "/files/download", target, target_token, {"Path": "/gone.txt"}).status == 404
    moved = d.public("GET", f"/data/io.cozy.contacts/{contact}", target, target_token)
    assert moved.status == 200 and moved.json()["fullname"] == "Moved Contact"


@pytest.mark.parametrize("check", T.rows)
@pytest.mark.parametrize("mode", ["nested", "flat"])
def test_admin(doubles, mode, check):
    check(doubles[mode])
