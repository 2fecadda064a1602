"""A v2 export imported into the cozy-stack double on a lab host, verified through the API.

The exports are made by tests/v2export.py in cozy-monitor's format. After the import every file's
checksum, every album membership and every contact field is read back through the public API. The
CLI runs inside the lab's namespace (`cozyops lab exec`) as a user runs it; it is killed (SIGKILL)
at several points and resumed: nothing missing, nothing doubled.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time

import pytest

from cozyops.stack import PublicClient
from tests.integration.test_stack import stack_lab  # noqa: F401 - the module fixture that brings the stack up
from tests.integration.test_stack import with_clients as stack_clients
from tests.v2export import Export, realistic

# The first test waits for the module fixture that brings the stack up (test_stack.stack_lab), which
# takes minutes on a busy machine: the time allowed is test_stack's.
pytestmark = [pytest.mark.lab, pytest.mark.timeout(1500)]


def with_clients(lab, domain: str, work):
    return stack_clients(lab, "h1", domain, work)


def new_instance(lab, disk_quota: int = 0) -> str:
    domain = f"v2{secrets.token_hex(3)}.{lab.spec.zone}"

    def create(admin, _public):
        admin.create_instance(domain, apps=["drive", "photos"], disk_quota=disk_quota)

    with_clients(lab, domain, create)
    return domain


def cli(lab, *args: str, timeout: float = 300, kill_when=None) -> subprocess.CompletedProcess:
    """Run the CLI in the lab; with ``kill_when``, SIGKILL it as soon as ``kill_when()`` is true
    (unless it ended first)."""
    argv = [sys.executable, "-m", "cozyops", "lab", "exec", "--dir", str(lab.dir), "--",
            sys.executable, "-m", "cozyops", *args]
    if kill_when is None:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while process.poll() is None and not kill_when() and time.monotonic() < deadline:
        time.sleep(0.01)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)  # the importer and lab exec: our own process group
    process.wait(timeout=30)
    return subprocess.CompletedProcess(argv, process.returncode, "", "")


def ledger_entries(lab, domain: str) -> int:
    """How many items the ledger holds for ``domain`` (read beside the running importer: WAL)."""
    import sqlite3

    path = lab.dir / "fleet" / ".cozyops" / "state.db"
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT COUNT(*) FROM v2_ledger WHERE domain = ?", (domain,)).fetchone()[0]
    except sqlite3.OperationalError:  # the importer has not made its tables yet
        return 0
    finally:
        db.close()


def md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def snapshot(public: PublicClient) -> dict:
    """Every file under the root (path -> (md5, album ids)), every contact, every album."""
    files: dict[str, tuple[str, list[str]]] = {}

    def walk(dir_id: str, path: str) -> None:
        for child in public.children(dir_id):
            full = f"{path}/{child.name}"
            if child.is_dir:
                walk(child.id, full)
            else:
                refs = [ref["id"] for ref in public.get(child.id).referenced_by]
                files[full] = (child.md5sum, sorted(refs))

    walk("io.cozy.files.root-dir", "")
    contacts = [row for row in public.normal_docs("io.cozy.contacts")] if _exists(public, "io.cozy.contacts") else []
    albums = [row for row in public.normal_docs("io.cozy.photos.albums")] \
        if _exists(public, "io.cozy.photos.albums") else []
    return {"files": files, "contacts": contacts, "albums": albums}


def _exists(public: PublicClient, doctype: str) -> bool:
    from cozyops.stack import StackError

    try:
        next(iter(public.normal_docs(doctype, limit=1)), None)
        return True
    except StackError as error:
        if error.status == 404:
            return False
        raise


def read_state(lab, domain: str) -> dict:
    def work(admin, public):
        public.set_token(admin.token(domain))
        return snapshot(public)

    return with_clients(lab, domain, work)


def check_contacts(found) -> list[dict]:
    """The realistic source's two contacts, every field; returned sorted (Jean first)."""
    contacts = sorted(found, key=lambda c: c["fullname"])
    assert [c["fullname"] for c in contacts] == ["Jean Dupont", "Jean Dupont (bis)"]
    jean = contacts[0]
    assert jean["name"] == {"familyName": "Dupont", "givenName": "Jean"}
    assert jean["birthday"] == "1980-01-01" and jean["note"] == "Voisin, 3ème étage"
    assert jean["company"] == "Cozy" and jean["jobTitle"] == "Dev"
    assert jean["phone"] == [{"number": "+33 6 12 34 56 78", "type": "cell"},
                             {"number": "+33 1 00 00 00 00", "type": "work", "label": "work", "primary": True}]
    assert jean["email"] == [{"address": "jean@example.com", "type": "home", "label": "home"}]
    assert jean["address"][0]["street"] == "12, rue Basse" and jean["address"][0]["code"] == "75011"
    assert len(jean["relationships"]["groups"]["data"]) == 1
    assert contacts[1]["email"] == [{"address": "jd@work.example", "type": "work", "label": "work"}]
    return contacts


def check_realistic(state: dict, holds: dict, directory: str) -> None:
    prefix = directory.rstrip("/")
    for path, data in holds["files"].items():
        assert state["files"][f"{prefix}/{path}"][0] == md5(data), path
    assert sorted(album["name"] for album in state["albums"]) == sorted(a["name"] for a in holds["albums"])
    albums = {album["name"]: album["_id"] for album in state["albums"]}
    in_album = albums[holds["albums"][0]["name"]]
    photos = {path: refs for path, (_, refs) in state["files"].items() if "/Photos/" in path}
    assert sorted(p.rsplit("/", 1)[1] for p, refs in photos.items() if refs == [in_album]) == \
        ["IMG_0001.JPG", "Plage été.jpg"]
    assert [refs for p, refs in photos.items() if p.endswith("3f2a00c1.jpg")] == [[]]
    check_contacts(c for c in state["contacts"] if not c.get("me"))  # not "myself"
    calendars = [p for p in state["files"] if "/Calendars/" in p]
    assert sorted(calendars) == [f"{prefix}/Calendars/Perso.ics", f"{prefix}/Calendars/Travail.ics"]
    assert f"{prefix}/Archive/event/5c1e0000000000000000000000000a" in state["files"]


@pytest.mark.parametrize(("locale", "directory"), [("en", "/"), ("fr", "/Importé v2")])
def test_realistic_export_imports_completely_and_a_second_run_adds_nothing(stack_lab, tmp_path,  # noqa: F811
                                                                          locale, directory):
    export, holds = realistic(locale)
    path = export.write(tmp_path / f"{locale}.tar.gz")
    domain = new_instance(stack_lab)
    first = cli(stack_lab, "v2", "import", str(path), "--to", domain, "--directory", directory, "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["members"] == sum(1 for entry in export.entries if entry[156:157] != b"x")
    assert "skipped" not in {i["outcome"] for i in report["items"] if i["kind"] not in ("directory", "reference")}
    state = read_state(stack_lab, domain)
    check_realistic(state, holds, directory)

    again = cli(stack_lab, "v2", "import", str(path), "--to", domain, "--directory", directory, "--json")
    assert again.returncode == 0, again.stderr
    outcomes = {i["outcome"] for i in json.loads(again.stdout)["items"] if i["kind"] != "event"}
    assert outcomes <= {"already imported", "skipped"}, outcomes
    assert read_state(stack_lab, domain) == state
    assert "Bearer" not in first.stderr + again.stderr


def test_kill_and_resume_at_several_points(stack_lab, tmp_path):  # noqa: F811
    export, holds = realistic("en")
    for number in range(300):  # enough small files for the kills to land mid-import, uploads in flight
        export.file("/Documents", f"n{number:03}.txt", f"note {number}".encode())
        holds["files"][f"Documents/n{number:03}.txt"] = f"note {number}".encode()
    path = export.write(tmp_path / "big.tar.gz")
    domain = new_instance(stack_lab)
    args = ("v2", "import", str(path), "--to", domain, "--json")
    outcomes = []
    for entries in (1, 100, 200):  # killed once the ledger holds that many items: at the start, twice mid-way
        killed = cli(stack_lab, *args, "--resume", kill_when=lambda n=entries: ledger_entries(stack_lab, domain) >= n)
        outcomes.append(killed.returncode)
        partial = read_state(stack_lab, domain)
        assert not [p for p in partial["files"] if "(2)" in p]
    assert -signal.SIGKILL in outcomes, outcomes  # at least one kill landed before the end
    refused = cli(stack_lab, *args)
    state_before = None
    if refused.returncode != 0:
        assert "--resume" in refused.stderr
        state_before = read_state(stack_lab, domain)
    final = cli(stack_lab, *args, "--resume")
    assert final.returncode == 0, final.stderr
    from cozyops.v2 import importer

    assert list(importer.scratch_dir().iterdir()) == []  # the killed importers' scratch: swept by the next runs
    state = read_state(stack_lab, domain)
    check_realistic(state, holds, "/")
    assert not [p for p in state["files"] if "(2)" in p]  # nothing doubled by the resumes
    if state_before is not None:
        assert set(state_before["files"]) <= set(state["files"])


def test_quota_checked_before_anything_is_written(stack_lab, tmp_path):  # noqa: F811
    path = Export().file("", "big.bin", os.urandom(200_000)).write(tmp_path / "q.tar.gz")
    domain = new_instance(stack_lab, disk_quota=100_000)
    result = cli(stack_lab, "v2", "import", str(path), "--to", domain)
    assert result.returncode == 1 and "quota" in result.stderr
    assert read_state(stack_lab, domain)["files"] == {}


def test_refused_archive_exits_1_and_writes_nothing(stack_lab, tmp_path):  # noqa: F811
    export = Export().file("", "a.bin", os.urandom(50_000)).file("", "b.txt", b"b")
    whole = export.write(tmp_path / "w.tar.gz").stat().st_size
    path = export.write(tmp_path / "cut.tar.gz", truncate_at=whole // 2)
    domain = new_instance(stack_lab)
    result = cli(stack_lab, "v2", "import", str(path), "--to", domain)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"cozyops: error: export {path}: truncated")
    assert read_state(stack_lab, domain)["files"] == {}


DEPTH = 500  # issue 7: an export with 500 levels of nesting is imported


def hostile_export() -> Export:
    export = Export().folder("", "Keep").file("/Keep", "ok.txt", b"ok")
    export.entry("files/../../outside.txt", b"escape")
    export.entry("/etc/cozyops-absolute", b"abs")
    export.entry("files/Keep/link", typeflag=b"2", linkname=b"/etc/passwd")
    export.entry("files/Keep/hard", typeflag=b"1", linkname=b"files//Keep/ok.txt")
    export.entry("files/Keep/null", typeflag=b"3", devmajor=1)
    export.entry("files/Keep/fifo", typeflag=b"6")
    export.entry(b"files/Keep/caf\xe9.txt", b"latin-1 name")
    export.file("/Keep", "twice.txt", b"first").file("/Keep", "twice.txt", b"second")
    export.folder("", "Deep")
    export.file(export.nested(DEPTH, "/Deep", prefix=""), "bottom.txt", b"bottom")
    export.photos_folder().photo("p.jpg", b"\xff\xd8photo")
    export.albums([{"_id": "a1", "name": "A"}], [export.reference("p.jpg", "a1"), "{not json",
                                                 {"albumid": "a1", "filepath": "../../../etc/passwd"},
                                                 "[" * 5000 + "]" * 5000])
    export.contacts_folder().entry("contacts/Contact_garbage.vcf", b"\x00\x01 not a vcard")
    return export


def test_hostile_export_gives_each_outcome_and_writes_only_under_the_target(stack_lab, tmp_path):  # noqa: F811
    path = hostile_export().write(tmp_path / "hostile.tar.gz")
    domain = new_instance(stack_lab)
    result = cli(stack_lab, "v2", "import", str(path), "--to", domain, "--directory", "/Target", "--json",
                 timeout=900)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    skipped = {i["reason"] for i in report["items"] if i["outcome"] == "skipped"}
    for reason in ("name leaves the destination (..)", "absolute name", "symbolic link", "hard link", "device",
                   "FIFO", "name is not valid UTF-8", "not valid JSON", "filepath leaves the export (..)"):
        assert reason in skipped, reason
    assert any(r.startswith("not a vCard") or r == "not valid UTF-8" for r in skipped)
    state = read_state(stack_lab, domain)
    assert all(p.startswith("/Target/") for p in state["files"]), [p for p in state["files"] if "/Target/" not in p]
    assert state["files"]["/Target/Keep/twice.txt"][0] == md5(b"first")
    assert state["files"]["/Target/Keep/twice (2).txt"][0] == md5(b"second")
    deep = "/Target/Deep/" + "/".join(str(d) for d in range(DEPTH)) + "/bottom.txt"
    assert state["files"][deep][0] == md5(b"bottom")
    photo = next(refs for p, (_, refs) in state["files"].items() if p.endswith("/p.jpg"))
    assert len(photo) == 1
    assert not os.path.exists("/outside.txt") and not os.path.exists("/etc/cozyops-absolute")


def test_large_file_streamed_and_adopted_when_already_at_its_name(stack_lab, tmp_path):  # noqa: F811
    from cozyops.v2 import importer

    big = os.urandom(importer.STREAM_ABOVE + 123_457)  # above the threshold: streamed from the archive
    first = Export().folder("", "Videos").file("/Videos", "clip.bin", big).file("", "a.txt", b"").file("", "z", b"z")
    domain = new_instance(stack_lab)
    result = cli(stack_lab, "v2", "import", str(first.write(tmp_path / "one.tar.gz")), "--to", domain, "--json")
    assert result.returncode == 0, result.stderr
    assert {i["target"]: i["outcome"] for i in json.loads(result.stdout)["items"]}["/Videos/clip.bin"] == "converted"
    files = read_state(stack_lab, domain)["files"]
    assert (files["/Videos/clip.bin"][0], files["/a.txt"][0]) == (md5(big), md5(b""))  # an empty file too
    # Another export (another ledger) with the same file: as after a crash between the stack's answer
    # and the ledger, the file found at its name with its checksum is adopted, not doubled.
    second = Export().folder("", "Videos").file("/Videos", "clip.bin", big).file("", "b.txt", b"b")
    again = cli(stack_lab, "v2", "import", str(second.write(tmp_path / "two.tar.gz")), "--to", domain, "--json")
    assert again.returncode == 0, again.stderr
    assert {i["target"]: i["outcome"] for i in json.loads(again.stdout)["items"]}["/Videos/clip.bin"] == "converted"
    files = read_state(stack_lab, domain)["files"]
    assert sorted(files) == ["/Videos/clip.bin", "/a.txt", "/b.txt", "/z"]
