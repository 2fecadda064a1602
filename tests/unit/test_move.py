"""The move's pure parts, from tables: steps shown, parts and cursors, the manifest, what an export
part holds, the comparison of two contents, instances.yml written with its comments, the DNS
names of an instance, the kill hook, and the journal a killed run leaves (state.Steps)."""

from __future__ import annotations

import datetime
import io
import json
import os
import subprocess
import sys
import zipfile

import pytest

from cozyops import state
from cozyops.errors import CozyopsError
from cozyops.instances import move
from cozyops.model import Fleet, Instance
from cozyops.stack.public import md5_base64


def test_the_steps_in_order_and_their_status():
    assert move.STEPS == ("checks", "create", "block", "export", "import", "verify", "switch", "unblock", "moved")
    assert move.BEFORE_SWITCH == ("checks", "create", "block", "export", "import", "verify")
    assert move.plan_steps(["checks", "create"])[:3] == [("checks", "done"), ("create", "done"), ("block", "todo")]
    assert all(status == "todo" for _, status in move.plan_steps([]))


@pytest.mark.parametrize(("count", "names", "cursors"), [
    (1, ["a.example.org - part000.zip"], []),
    (3, ["a.example.org - part000.zip", "a.example.org - part001.zip", "a.example.org - part002.zip"],
     ["part001", "part002"]),
])
def test_parts_and_cursors(count, names, cursors):
    assert move.part_names("a.example.org", count) == names
    assert move.cursors(count) == cursors


def test_the_manifest_and_the_part_of_each_cursor():
    parts = [{"name": "p0", "size": 10, "sha256": "x"}, {"name": "p1", "size": 30, "sha256": "y"}]
    doc = move.manifest("a.example.org", "TOKEN", parts)
    assert doc["data"]["type"] == "io.cozy.exports" and doc["data"]["id"] == "TOKEN"
    assert doc["data"]["attributes"] == {"domain": "a.example.org", "state": "done", "parts_cursors": ["part001"],
                                         "total_size": 40, "parts_size": 30}
    assert move.part_for_cursor(parts, "") == parts[0]
    assert move.part_for_cursor(parts, "part001") == parts[1]
    assert move.part_for_cursor(parts, "part002") is None
    assert move.part_for_cursor([], "") is None


def _part(files: dict[str, bytes], docs: dict[str, list[str]], dirs: list[str], bad_md5: str = "") -> zipfile.ZipFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("My Cozy/Data/instance.json", "{}")
        for doctype, ids in docs.items():
            for doc_id in ids:
                archive.writestr(f"My Cozy/Data/{doctype}/{doc_id}.json", json.dumps({"_id": doc_id}))
        archive.writestr("My Cozy/Data/io.cozy.files/io.cozy.files.root-dir.json",
                         json.dumps({"_id": "io.cozy.files.root-dir", "type": "directory", "path": "/"}))
        for number, path in enumerate(dirs):
            archive.writestr(f"My Cozy/Data/io.cozy.files/d{number}.json",
                             json.dumps({"_id": f"d{number}", "type": "directory", "path": path}))
        for number, (path, data) in enumerate(files.items()):
            md5 = "WRONG" if path == bad_md5 else md5_base64(data)
            archive.writestr(f"My Cozy/Data/io.cozy.files/f{number}.json",
                             json.dumps({"_id": f"f{number}", "type": "file", "md5sum": md5}))
            archive.writestr("My Cozy/Files" + path, data)
    return zipfile.ZipFile(io.BytesIO(buffer.getvalue()))


def test_what_a_part_holds():
    content = move.Content()
    move.read_part(_part({"/Docs/a.txt": b"abc", "/b": b""}, {"io.cozy.contacts": ["c1", "c2"],
                                                             "io.cozy.exports": ["e"]}, ["/Docs"]), content)
    assert content.tree == {"/Docs": ("directory", 0, ""), "/Docs/a.txt": ("file", 3, md5_base64(b"abc")),
                            "/b": ("file", 0, md5_base64(b""))}
    assert content.docs == {"io.cozy.contacts": {"c1", "c2"}, "io.cozy.exports": {"e"}}
    assert content.problems == []


def test_a_part_whose_content_is_not_its_documents_md5_is_a_problem():
    content = move.Content()
    move.read_part(_part({"/a": b"abc"}, {}, [], bad_md5="/a"), content)
    assert content.problems == ["/a: its content's MD5 is not its document's in the export"]


def test_the_documents_the_importer_writes():
    source = {"io.cozy.contacts": {"a"}, "io.cozy.exports": {"x"}, "io.cozy.sharings": {"s"},
              "io.cozy.settings": {"io.cozy.settings.instance", "io.cozy.settings.bitwarden", "mine"},
              "io.cozy.apps": {"io.cozy.apps/drive"}, "io.cozy.files.versions": {"v"}}
    assert move.expected_docs(source) == {"io.cozy.contacts": {"a"}, "io.cozy.settings": {"mine"}}


A = ("file", 3, "md5a")


@pytest.mark.parametrize(("source", "target", "problems"), [
    (move.Content({"io.cozy.contacts": {"a", "b"}}, {"/x": A}), move.Content({"io.cozy.contacts": {"a", "b"}},
                                                                             {"/x": A}), []),
    (move.Content({}, {"/x": A}), move.Content({}, {}), ["/x: missing on the target"]),
    (move.Content({}, {}), move.Content({}, {"/x": A}), ["/x: on the target only"]),
    (move.Content({}, {"/x": A}), move.Content({}, {"/x": ("file", 3, "other")}),
     ["/x: file of 3 bytes (MD5 md5a) on the source, file of 3 bytes (MD5 other) on the target"]),
    (move.Content({"io.cozy.contacts": {"a", "b"}}), move.Content({"io.cozy.contacts": {"a"}}),
     ["io.cozy.contacts: 1 of 2 documents missing on the target (e.g. b)"]),
    (move.Content({"io.cozy.contacts": {"a"}}), move.Content({"io.cozy.contacts": {"a", "dup"}}),
     ["io.cozy.contacts: 2 documents on the target, 1 on the source"]),
    # the stack writes jobs itself during an import: ids checked, not counts
    (move.Content({"io.cozy.jobs": {"a"}}), move.Content({"io.cozy.jobs": {"a", "the-import"}}), []),
])
def test_compare(source, target, problems):
    assert move.compare(source, target) == problems


def test_instances_yml_keeps_its_comments(tmp_path):
    path = tmp_path / "instances.yml"
    text = ("# my instances\ninstances:\n  - domain: a.example.org\n    server: h1  # here for now\n"
            "    apps: [home, drive]\n  - domain: b.example.org\n    server: h1\n")
    path.write_text(text)
    assert move.set_server_in_file(tmp_path, "a.example.org", "h2") is True
    assert path.read_text() == text.replace("server: h1  # here", "server: h2  # here")
    assert move.set_server_in_file(tmp_path, "a.example.org", "h2") is False
    with pytest.raises(CozyopsError, match="c.example.org is not an instance of the fleet"):
        move.set_server_in_file(tmp_path, "c.example.org", "h2")


def test_the_fleet_after_the_move_and_the_instances_dns_names(tmp_path):
    fleet = Fleet("f", tmp_path, "example.org", "nested", None, None, {},
                  (Instance("a.example.org", "h1"), Instance("b.example.org", "h1")))
    moved = move.moved_fleet(fleet, "a.example.org", "h2")
    assert [(i.domain, i.server) for i in moved.instances] == [("a.example.org", "h2"), ("b.example.org", "h1")]
    assert move.instance_names("a.example.org", "example.org") == {"a", "*.a"}
    assert move.instance_names("a.b.example.org", "example.org") == {"a.b", "*.a.b"}


@pytest.mark.parametrize(("version", "key"), [("1.6.20", (1, 6, 20)), ("v1.6.3-12-gabc", (1, 6, 3)), ("", (0,))])
def test_version_order(version, key):
    assert move._version_key(version) == key


def test_the_kill_hook_kills_only_at_its_point():
    code = "from cozyops.instances import move; move.kill_point('other'); print('alive'); move.kill_point('here')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, move.KILL_ENV: "here"})
    assert result.returncode == -9 and result.stdout == "alive\n"


def test_a_killed_runs_journal_is_continued_and_removals_come_due(tmp_path):
    fleet = Fleet("f", tmp_path, "example.org", "nested", None, None, {}, (Instance("a.example.org", "h1"),))
    params = {"domain": "a.example.org", "source": "h1", "target": "h2", "keep_days": 7}
    code = ("import sys; from pathlib import Path; from cozyops import state; from cozyops.instances import move\n"
            "s = state.Steps(Path(sys.argv[1]), 'move', 'a.example.org'); s.start(" + repr(params) + ")\n"
            "s.record('checks', {'locale': 'en'}); move.kill_point('checks')\n")
    killed = subprocess.run([sys.executable, "-c", code, str(fleet.state_dir)],
                            env={**os.environ, move.KILL_ENV: "checks"})
    assert killed.returncode == -9
    with state.Steps(fleet.state_dir, "move", "a.example.org") as steps:
        assert steps.status() == "started"
        assert steps.start({"target": "elsewhere"}) == params and not steps.new
        assert steps.result("checks") == {"locale": "en"} and not steps.done("create")
        past = (move.now() - datetime.timedelta(days=1)).isoformat(timespec="seconds")
        steps.record("moved", {"source": "h1", "keep_until": past})
        steps.finish("moved")
    [found] = move.moves(fleet)
    assert found["status"] == "finished" and found["outcome"] == "moved" and found["steps"][0] == "checks"
    assert [m["domain"] for m in move.due_removals(fleet)] == ["a.example.org"]
    assert move.due_removals(fleet, move.now() - datetime.timedelta(days=2)) == []


def test_the_registries_an_instance_installs_from_are_its_contexts_else_default():
    from cozyops.instances.move import config_documents, missing_registries, registries_for

    source = config_documents("registries:\n  default:\n    - https://a/\n    - https://b\n  pro:\n    - https://p\n"
                              "---\nfs:\n  url: file:///var/lib/cozy\n")
    assert registries_for(source, None) == ["https://a", "https://b"]
    assert registries_for(source, "pro") == ["https://p"]
    assert registries_for(source, "other") == ["https://a", "https://b"]
    same = config_documents("registries:\n  default: [https://a, https://b/]\n  pro: [https://p]\n")
    assert missing_registries(source, same, None) == [] and missing_registries(source, same, "pro") == []
    fewer = config_documents("registries:\n  default: [https://a]\n")
    assert missing_registries(source, fewer, None) == ["https://b"]
    assert missing_registries(source, fewer, "pro") == ["https://p"]
    # cozy.yml.local after cozy.yml: the last file that names registries wins
    assert registries_for(config_documents("registries:\n  default: [https://a]\n---\nregistries:\n"
                                           "  default: [https://z]\n"), None) == ["https://z"]
    assert config_documents(": not yaml [") == []
