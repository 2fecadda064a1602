"""The importer without a stack: the dry run's report accounts for every member; quota; token renewal."""

from __future__ import annotations

from pathlib import Path

import pytest

from cozyops.errors import CozyopsError
from cozyops.stack import PublicClient
from cozyops.v2 import importer
from tests.v2export import Export, realistic


def dry_run(path, directory="/"):
    report = importer.Report(str(path), "alice.test", directory, dry_run=True)
    return importer.Importer(path, None, None, report, directory=directory, scratch=path.parent).run()


@pytest.mark.parametrize("locale", ["en", "fr"])
def test_dry_run_reports_every_member(tmp_path, locale):
    export, holds = realistic(locale)
    path = export.write(tmp_path / "x.tar.gz")
    report = dry_run(path, "/Imported")
    files = {i.target for i in report.items if i.kind in ("file", "photo") and i.outcome == "converted"}
    assert files == {"/Imported/" + p for p in holds["files"]}
    members = {i.source for i in report.items if " line " not in i.source and not i.source.startswith("calendar")}
    assert report.members == sum(1 for entry in export.entries if entry[156:157] != b"x")  # PAX headers aside
    assert len(members) == report.members - 3  # the two NDJSON files reported line by line; a repeated vcf name
    outcomes = report.counts()
    assert outcomes["kept as file"] == 3  # two events and a tag, as JSON
    refs = [i for i in report.items if i.kind == "reference"]
    assert [i.outcome for i in refs] == ["converted", "converted", "skipped"]
    contacts = [i for i in report.items if i.kind == "contact"]
    assert len(contacts) == 2 and len({i.target for i in contacts}) == 2  # the repeated vcf name: two contacts
    calendars = {i.target for i in report.items if i.kind == "calendar"}
    assert calendars == {"/Imported/Calendars/Travail.ics", "/Imported/Calendars/Perso.ics"}


def test_repeated_path_keeps_both_copies_under_conflict_names(tmp_path):
    export = Export().file("", "a.txt", b"1").file("", "a.txt", b"2").file("", "a (2).txt", b"3")
    items = [(i.outcome, i.target) for i in dry_run(export.write(tmp_path / "x.tgz")).items]
    assert items == [("converted", "/a.txt"), ("renamed", "/a (2).txt"), ("renamed", "/a (2) (2).txt")]


def test_hostile_lines_and_members_are_reported_and_the_rest_kept(tmp_path):
    export = Export().photos_folder().photo("p.jpg", b"jpg")
    export.albums([{"_id": "a1", "name": "A"}], [export.reference("p.jpg", "a1"), "{bad json",
                                                 {"albumid": "a1", "filepath": "../../../etc/passwd"},
                                                 {"albumid": "zz", "filepath": "Photos/x.jpg"}])
    export.contacts_folder().entry("contacts/Contact_bad.vcf", b"garbage\x00")
    export.entry("files/../escape", b"x")
    report = dry_run(export.write(tmp_path / "x.tgz"))
    skipped = {(i.kind, i.reason) for i in report.items if i.outcome == "skipped"}
    assert ("reference", "not valid JSON") in skipped
    assert ("reference", "filepath leaves the export (..)") in skipped
    assert ("reference", "album zz is not in albums.json") in skipped
    assert any(kind == "contact" and "not a vCard" in reason for kind, reason in skipped)
    assert ("member", "name leaves the destination (..)") in skipped
    assert [i.outcome for i in report.items if i.kind == "reference"].count("converted") == 1


@pytest.mark.parametrize(("usage", "needed", "ok"), [
    ({"used": "10"}, 10**12, True), ({"used": "10", "quota": "100"}, 90, True),
    ({"used": "10", "quota": "100"}, 91, False),
])
def test_quota(usage, needed, ok):
    if ok:
        importer.check_quota(usage, needed, "alice.test")
    else:
        with pytest.raises(CozyopsError, match="raise its quota"):
            importer.check_quota(usage, needed, "alice.test")


def test_token_renewed_before_thirty_minutes():
    now = [0.0]
    minted = []
    public = PublicClient("http://127.0.0.1:9", "alice.test")
    target = importer.Target("alice.test", public, lambda: minted.append(1) or f"t{len(minted)}", lambda: now[0])
    target.client()
    now[0] = 24 * 60
    target.client()
    assert len(minted) == 1
    now[0] = 26 * 60
    assert target.client().http.session.headers["Authorization"] == "Bearer t2"


def test_hundred_thousand_folders_and_five_hundred_levels(tmp_path):
    export = Export()
    for top in range(100):
        export.folder("", f"t{top}")
        for sub in range(999):
            export.folder(f"/t{top}", f"s{sub}")
    export.file(export.nested(500), "deep.txt", b"deep")
    report = dry_run(export.write(tmp_path / "wide.tar.gz"))
    assert report.counts() == {"converted": 100_000 + 500 + 1}
    assert report.items[-1].target == "/" + "/".join(f"d{d}" for d in range(500)) + "/deep.txt"


HOLD_SCRATCH = """import sys, time
from pathlib import Path
from cozyops.v2 import importer
with importer.own_scratch(Path(sys.argv[1])) as folder:
    (folder / "spooled.bin").write_bytes(b"x" * 1000)
    print(folder, flush=True)
    time.sleep(600)
"""


def _holder(base):
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", HOLD_SCRATCH, str(base)], stdout=subprocess.PIPE, text=True)
    folder = Path(process.stdout.readline().strip())
    assert folder.is_dir() and folder.name.startswith(f"cozyops-v2-{process.pid}-")
    return process, folder


def test_scratch_of_a_killed_importer_is_removed_by_the_next_run_and_a_running_ones_kept(tmp_path):
    base = tmp_path / "scratch"
    alive, alive_folder = _holder(base)
    killed, killed_folder = _holder(base)
    try:
        killed.kill()
        killed.wait()
        assert killed_folder.is_dir()  # SIGKILL: nothing of its own clean-up ran
        # The next import (here a dry run) sweeps what the dead one left, and only that.
        export = Export().file("", "a.txt", b"a")
        report = importer.Report("x", "alice.test", "/", dry_run=True)
        importer.Importer(export.write(tmp_path / "x.tar.gz"), None, None, report, scratch=base).run()
        assert not killed_folder.exists() and not Path(f"{killed_folder}.lock").exists()
        assert (alive_folder / "spooled.bin").is_file() and Path(f"{alive_folder}.lock").is_file()
        assert sorted(p.name for p in base.iterdir()) == [alive_folder.name, alive_folder.name + ".lock"]
    finally:
        alive.kill()
        alive.wait()
        alive.stdout.close()
        killed.stdout.close()
    assert importer.sweep_scratch(base) == [alive_folder]
    assert list(base.iterdir()) == []


def test_scratch_sweep_leaves_recent_unlocked_folders_and_what_is_not_scratch(tmp_path):
    import os
    import time

    recent = tmp_path / "cozyops-v2-abcdefgh"  # an older importer's (no lock file): kept a day
    recent.mkdir()
    old = tmp_path / "cozyops-v2-oldoldol"
    old.mkdir()
    day_ago = time.time() - importer.UNLOCKED_SCRATCH_AGE - 60
    os.utime(old, (day_ago, day_ago))
    other = tmp_path / "unrelated"
    other.mkdir()
    orphan_lock = tmp_path / "cozyops-v2-1-deadbeef.lock"  # killed between its lock and its folder
    orphan_lock.touch()
    assert importer.sweep_scratch(tmp_path) == [old]
    assert recent.is_dir() and other.is_dir() and not orphan_lock.exists()
