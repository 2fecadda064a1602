"""The live v2 reader against a real pouchdb-server on 127.0.0.1 (no lab): paging, limits, attachments,
the inspection, the dry run's report, the refusals. The import itself: test_v2_couchdb.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cozyops.v2 import couchimport, importer
from cozyops.v2.couchdb import CouchRefused, CouchSource, Skipped
from tests.v2couch import PouchServer, V2Db, hostile_db, realistic_db


@pytest.fixture(scope="module")
def pouch(tmp_path_factory):
    if not os.path.isdir(os.environ.get("COZYOPS_POUCHDB_CACHE", "")):
        pytest.fail("pouchdb-server is not installed (sudo cozyops lab setup)")
    realistic, holds = realistic_db("en")
    paged = V2Db()
    for number in range(25):
        paged.add({"_id": f"doc {number:02} é/\"x", "docType": "Note", "n": number})  # ids URL-encoding must survive
    paged.add({"_id": "zz-big", "docType": "Note", "blob": "x" * 300_000})
    with PouchServer(tmp_path_factory.mktemp("pouch")) as server:
        realistic.load(server.base)
        paged.load(server.base, "paged")
        hostile_db().load(server.base, "hostile")
        server.add_admin("adm", "pw-secret")
        yield server, holds


def test_documents_are_paged_in_id_order_and_an_oversized_page_read_one_by_one(pouch):
    server, _ = pouch
    with CouchSource(f"http://adm:pw-secret@127.0.0.1:{server.port}/paged", page_size=4, max_page=100_000,
                     max_doc=200_000) as source:
        got = list(source.docs())
    ids = [d["_id"] if isinstance(d, dict) else d.doc_id for d in got]
    assert ids == sorted(ids) and len(ids) == 26 and len(set(ids)) == 26
    assert got[-1] == Skipped("zz-big", "document larger than 200000 bytes")
    assert [d["n"] for d in got[:-1]] == list(range(25))


def test_attachments_are_streamed_and_a_missing_one_is_none(pouch):
    server, holds = pouch
    with CouchSource(f"http://127.0.0.1:{server.port}/") as source:
        files = [d for d in source.docs() if isinstance(d, dict) and d.get("docType") == "File"]
        notes = next(d for d in files if d["name"] == "notes.txt")
        with source.attachment(notes["binary"]["file"]["id"], "file") as body:
            assert body.size == len(b"v2 notes\n") and body.read(4) == b"v2 n" and body.read() == b"otes\n"
        with source.attachment(notes["binary"]["file"]["id"], "raw") as body:
            assert body is None
        with source.attachment("no-such-doc", "file") as body:
            assert body is None


def test_inspection_counts_and_dry_run_reports_every_document(pouch, tmp_path):
    server, holds = pouch
    with CouchSource(f"http://adm:pw-secret@127.0.0.1:{server.port}/cozy") as source:
        plan = couchimport.inspect_couch(source)
        found = plan.inspection
        assert (found.folders, found.files, found.photos, found.contacts, found.albums_lines) == (3, 5, 4, 2, 2)
        assert found.doctypes == {"cozyinstance": 1, "event": 2, "tag": 1, "message": 1, "note": 1}
        assert [e.path for e in plan.folders] == ["files/Documents", "files/Documents/Bills", "files/Photos"]
        report = importer.Report(source.display, "alice.test", "/Imported", dry_run=True)
        couchimport.CouchImporter(source, plan, None, None, report, directory="/Imported", scratch=tmp_path).run()
    files = {i.target for i in report.items if i.kind in ("file", "photo", "archive") and i.outcome == "converted"}
    assert files == {"/Imported/" + p for p in holds["files"]}  # with another app's contents next to its JSON
    assert report.members == found.members
    refs = [i for i in report.items if i.kind == "reference"]
    assert len(refs) == 4  # three photos in the album (one of them the Drive file), and the contact's picture
    assert {i.target for i in report.items if i.kind == "calendar"} == {"/Imported/Calendars/Travail.ics",
                                                                        "/Imported/Calendars/Perso.ics"}
    assert {i.target for i in report.items if i.kind == "picture"} == {"/Imported/Contacts/Jean Dupont.png"}
    assert not [i for i in report.items if i.outcome == "skipped"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cozyops", "v2", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("url", "message"), [
    ("http://adm:WRONG@127.0.0.1:{port}/cozy", "refused the credentials (401)"),
    ("http://adm:WRONG@127.0.0.1:1/cozy", "cannot be reached (connection refused)"),
    ("http://adm:pw-secret@127.0.0.1:{port}/nothere", "has no database 'nothere' (404)"),
])
def test_refusals_name_the_url_without_the_password(pouch, url, message):
    server, _ = pouch
    result = run_cli("inspect", "--couchdb", url.format(port=server.port))
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("cozyops: error: CouchDB http://adm@127.0.0.1:") and message in line, line
    assert "WRONG" not in result.stderr + result.stdout and "pw-secret" not in result.stderr + result.stdout


def test_a_database_without_v2_documents_is_refused(pouch):
    server, _ = pouch
    plain = V2Db()
    plain.add({"_id": "x", "hello": "world"})
    plain.load(f"http://adm:pw-secret@127.0.0.1:{server.port}", "plain")
    with CouchSource(f"http://adm:pw-secret@127.0.0.1:{server.port}/plain") as source, \
            pytest.raises(CouchRefused, match="holds no document with a docType"):
        couchimport.inspect_couch(source)


def test_hostile_documents_in_the_dry_run(pouch, tmp_path):
    server, _ = pouch
    with CouchSource(f"http://127.0.0.1:{server.port}/hostile") as source:
        plan = couchimport.inspect_couch(source)
        report = importer.Report(source.display, "alice.test", "/", dry_run=True)
        couchimport.CouchImporter(source, plan, None, None, report, scratch=tmp_path).run()
    skipped = {i.reason for i in report.items if i.outcome == "skipped"}
    assert {"name leaves the destination (..)", "name holds a /", "field n is not a string", "datapoints is not a list",
            "its upload never finished in v2 (no binary)"} <= skipped
    assert [(i.outcome, i.target) for i in report.items if "twice" in i.target] == [
        ("converted", "/Keep/twice.txt"), ("renamed", "/Keep/twice (2).txt")]


def test_exactly_one_source():
    both = run_cli("inspect", "x.tar.gz", "--couchdb", "http://127.0.0.1:1/")
    neither = run_cli("inspect")
    for result in (both, neither):
        assert result.returncode == 1 and "exactly one source" in result.stderr


def test_inspect_command_says_what_the_database_holds(pouch):
    server, _ = pouch
    url = f"http://adm:pw-secret@127.0.0.1:{server.port}/"
    human, as_json = run_cli("inspect", "--couchdb", url), run_cli("inspect", "--couchdb", url, "--json")
    assert human.returncode == 0 and as_json.returncode == 0, human.stderr + as_json.stderr
    assert human.stdout.startswith(f"http://adm@127.0.0.1:{server.port}/cozy: ")
    assert "3 folders, 5 files, 4 photos" in human.stdout and "2 contacts, 2 albums" in human.stdout
    assert "  archived message: 1" in human.stdout
    found = json.loads(as_json.stdout)
    assert (found["folders"], found["files"], found["contacts"]) == (3, 5, 2) and found["problems"] == []
    for result in (human, as_json):
        assert "pw-secret" not in result.stdout + result.stderr
