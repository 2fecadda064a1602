"""A live v2 CouchDB imported into the cozy-stack double on a lab host, verified through the API.

pouchdb-server (the lab's, from its cache) runs in the lab's namespace, loaded with v2-shaped
documents by tests/v2couch.py, with an admin (so that the URL carries a password that must never
show). The CLI runs inside the lab's namespace (`cozyops lab exec`) as a user runs it; it is killed
(SIGKILL) at several points and resumed: nothing missing, nothing doubled.
"""

from __future__ import annotations

import json
import signal

import pytest

from tests.integration.test_stack import stack_lab  # noqa: F401 - the module fixture that brings the stack up
from tests.integration.test_v2_import import check_contacts, cli, ledger_entries, md5, new_instance, with_clients
from tests.v2couch import PouchServer, V2Db, hostile_db, realistic_db

# The first test waits for the module fixture that brings the stack up (test_stack.stack_lab), which
# takes minutes on a busy machine: the time allowed is test_stack's.
pytestmark = [pytest.mark.lab, pytest.mark.timeout(1500)]

USER, PASSWORD = "v2admin", "s3cret-Pa55word"


@pytest.fixture(scope="module")
def couch(stack_lab, tmp_path_factory):  # noqa: F811
    db, holds = realistic_db("fr")
    big, big_holds = realistic_db("en")
    for number in range(200):  # enough small files for the kills to land mid-import
        big.file("", f"n{number:03}.txt", f"note {number}".encode())
        big_holds["files"][f"n{number:03}.txt"] = f"note {number}".encode()
    plain = V2Db()
    plain.add({"_id": "x", "hello": "world"})
    with PouchServer(tmp_path_factory.mktemp("pouch"), port=25984, netns=stack_lab.spec.netns) as server:
        server.call(lambda: (db.load(server.base), big.load(server.base, "big"),
                             hostile_db().load(server.base, "hostile"), plain.load(server.base, "plain")))
        server.add_admin(USER, PASSWORD)
        yield server, {"cozy": holds, "big": big_holds}


def url(server, db: str = "cozy", password: str = PASSWORD) -> str:
    return f"http://{USER}:{password}@127.0.0.1:{server.port}/{db}"


def tree(lab, domain: str) -> dict:
    """Every file and directory (path -> attributes and refs), every contact, every album."""

    def work(admin, public):
        public.set_token(admin.token(domain))
        found: dict[str, dict] = {}

        def walk(dir_id: str, path: str) -> None:
            for child in public.children(dir_id):
                full = f"{path}/{child.name}"
                doc = public.get(child.id)
                found[full] = {**doc.attributes, "id": doc.id, "refs": sorted(r["id"] for r in doc.referenced_by)}
                if child.is_dir:
                    walk(child.id, full)

        walk("io.cozy.files.root-dir", "")
        docs = {}
        for doctype in ("io.cozy.contacts", "io.cozy.photos.albums"):
            try:
                docs[doctype] = [d for d in public.normal_docs(doctype) if not d.get("me")]
            except Exception:  # noqa: BLE001 - the database does not exist yet
                docs[doctype] = []
        return {"files": found, **docs}

    return with_clients(lab, domain, work)


def check(state: dict, holds: dict) -> None:
    files = state["files"]
    for path, data in holds["files"].items():
        assert files[f"/{path}"]["md5sum"] == md5(data), path
    pdf = files["/Documents/Factures/edf-2017-01.pdf"]
    # v2: created 2017-01-15T10:00:01 (upload), modified 2017-01-14T18:20 (the file's own date): both kept
    # as the earlier creation and the modification
    assert pdf["created_at"].startswith("2017-01-14T18:20:00") and pdf["updated_at"].startswith("2017-01-14T18:20:00")
    assert pdf["tags"] == ["facture", "edf"]
    documents = files["/Documents"]
    assert documents["created_at"].startswith("2015-01-02T03:04:05")
    assert documents["updated_at"].startswith("2015-06-07T08:09:10")
    assert documents["tags"] == ["papiers"]
    assert files["/Documents/Factures"]["tags"] == ["factures"]  # "a,b" cannot pass (reported)
    albums = {a["name"]: a for a in state["io.cozy.photos.albums"]}
    assert sorted(albums) == sorted([holds["album"], "Vide"])
    assert albums[holds["album"]]["description"] == "Été"
    holiday = albums[holds["album"]]["_id"]
    in_album = sorted(p for p, f in files.items() if f["refs"] == [holiday])
    assert in_album == sorted([f"/{holds['photo_dir']}/IMG_0001.JPG", f"/{holds['photo_dir']}/Plage été.jpg",
                               "/Photos/beach.jpg"])  # the photo imported from Files is the file, not a copy
    assert not [p for p in files if p.startswith(f"/{holds['photo_dir']}/") and "beach" in p]
    jean = check_contacts(state["io.cozy.contacts"])[0]
    picture = files["/Contacts/Jean Dupont.png"]
    assert picture["md5sum"] == md5(holds["picture"]) and picture["refs"] == [jean["_id"]]
    assert sorted(p for p in files if p.startswith("/Calendars/")) == ["/Calendars/Perso.ics", "/Calendars/Travail.ics"]
    assert "/Archive/event/5c1e0000000000000000000000000a" in files and "/Archive/tag/tag1" in files


def test_live_database_imports_completely_and_a_second_run_adds_nothing(couch, stack_lab):  # noqa: F811
    server, holds = couch
    domain = new_instance(stack_lab)
    first = cli(stack_lab, "v2", "import", "--couchdb", url(server), "--to", domain, "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["export"] == f"http://{USER}@127.0.0.1:{server.port}/cozy"
    assert "skipped" not in {i["outcome"] for i in report["items"]}, [i for i in report["items"]
                                                                     if i["outcome"] == "skipped"]
    state = tree(stack_lab, domain)
    check(state, holds["cozy"])
    orphans = [i for i in report["items"] if i["source"].startswith("Binary ") and i["outcome"] == "kept as file"]
    assert len(orphans) == 1 and "no file, photo or other document refers to" in orphans[0]["reason"], orphans

    again = cli(stack_lab, "v2", "import", "--couchdb", url(server), "--to", domain, "--json")
    assert again.returncode == 0, again.stderr
    outcomes = {i["outcome"] for i in json.loads(again.stdout)["items"] if i["kind"] != "event"}
    assert outcomes == {"already imported"}, outcomes
    assert tree(stack_lab, domain) == state
    inspected = cli(stack_lab, "v2", "inspect", "--couchdb", url(server))
    assert inspected.returncode == 0 and "4 photos" in inspected.stdout
    for run in (first, again, inspected):
        assert PASSWORD not in run.stdout + run.stderr and "Bearer" not in run.stderr


def test_kill_and_resume_at_several_points(couch, stack_lab):  # noqa: F811
    server, holds = couch
    domain = new_instance(stack_lab)
    args = ("v2", "import", "--couchdb", url(server, "big"), "--to", domain, "--json")
    outcomes = []
    for held in (1, 80, 160):  # killed once the ledger holds that many items (the import is fast)
        killed = cli(stack_lab, *args, "--resume", kill_when=lambda n=held: ledger_entries(stack_lab, domain) >= n)
        outcomes.append(killed.returncode)
        assert not [p for p in tree(stack_lab, domain)["files"] if "(2)" in p]
    assert -signal.SIGKILL in outcomes, outcomes
    final = cli(stack_lab, *args, "--resume")
    assert final.returncode == 0, final.stderr
    state = tree(stack_lab, domain)
    big = holds["big"]
    for path, data in big["files"].items():
        assert state["files"][f"/{path}"]["md5sum"] == md5(data), path
    assert not [p for p in state["files"] if "(2)" in p]  # nothing doubled by the resumes
    assert len(state["io.cozy.contacts"]) == 2 and len(state["io.cozy.photos.albums"]) == 2
    assert all(len(f["refs"]) <= 1 for f in state["files"].values())


def test_hostile_documents_are_skipped_and_reported(couch, stack_lab):  # noqa: F811
    server, _ = couch
    domain = new_instance(stack_lab)
    result = cli(stack_lab, "v2", "import", "--couchdb", url(server, "hostile"), "--to", domain,
                 "--directory", "/Target", "--json")
    assert result.returncode == 0, result.stderr
    skipped = {i["reason"] for i in json.loads(result.stdout)["items"] if i["outcome"] == "skipped"}
    for reason in ("name leaves the destination (..)", "name holds a /", "field n is not a string",
                   "datapoints is not a list", "no name and no datapoint: not a contact",
                   "name holds a character cozy-stack forbids (NUL, CR or LF)",
                   "its upload never finished in v2 (no binary)",
                   "its content (nobinary/file) is missing from the database"):
        assert reason in skipped, (reason, skipped)
    files = tree(stack_lab, domain)["files"]
    assert all(p.startswith("/Target/") for p, f in files.items() if f["type"] == "file"), files
    assert files["/Target/Keep/ok.txt"]["md5sum"] == md5(b"ok")
    assert files["/Target/Keep/twice.txt"]["md5sum"] == md5(b"first")
    assert files["/Target/Keep/twice (2).txt"]["md5sum"] == md5(b"second")


@pytest.mark.parametrize(("which", "message"), [
    ("wrong password", "refused the credentials (401)"),
    ("unreachable", "cannot be reached"),
    ("no database", "has no database 'nothere' (404)"),
    ("not v2", "holds no document with a docType"),
])
def test_a_database_that_cannot_be_read_exits_1_and_writes_nothing(couch, stack_lab, which, message):  # noqa: F811
    server, _ = couch
    target = {"wrong password": url(server, password="not-the-password"),
              "unreachable": f"http://{USER}:{PASSWORD}@127.0.0.1:1/cozy",
              "no database": url(server, "nothere"), "not v2": url(server, "plain")}[which]
    domain = new_instance(stack_lab)
    before = tree(stack_lab, domain)
    result = cli(stack_lab, "v2", "import", "--couchdb", target, "--to", domain)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"cozyops: error: CouchDB http://{USER}@127.0.0.1:") and message in last, last
    assert "not-the-password" not in result.stderr + result.stdout and PASSWORD not in result.stderr + result.stdout
    assert tree(stack_lab, domain) == before
