"""state.db's schema version: a database written by main before versions existed is upgraded in
place, in one transaction; a newer one is refused with one line; the challenge journal."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from cozyops import cli, state
from cozyops.tls.store import CertStore

FIXTURE = Path(__file__).parent.parent / "fixtures/state-v1-main-4677992.db"


def copy(tmp_path: Path) -> Path:
    shutil.copy(FIXTURE, tmp_path / "state.db")
    return tmp_path


def columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def test_the_fixture_is_a_version_1_database():
    db = sqlite3.connect(FIXTURE)
    assert db.execute("PRAGMA user_version").fetchone() == (0,)
    assert "deployed" in columns(db, "certificates") and columns(db, "challenges") == []
    db.close()


def test_a_database_main_wrote_is_upgraded_in_place_keeping_everything(tmp_path):
    db = state.connect(copy(tmp_path))
    assert state.schema_version(db) == state.SCHEMA_VERSION == 4
    assert "deployed" not in columns(db, "certificates")  # nothing ever wrote it
    assert columns(db, "challenges") == ["id", "at", "run", "zone", "fqdn", "value"]
    assert "order_url" in columns(db, "issuances")
    db.close()
    journal = state.Journal(tmp_path)
    assert [(e["outcome"], e["count"], e["error"]) for e in journal.entries("dns-batch")] == [
        ("ok", 3, None), ("failed", 1, "REFUSED: the server refuses the update")]
    assert journal.entries(outcome="failed")[0]["detail"] == [{"name": "alice", "type": "A"}]
    journal.close()
    store = CertStore(tmp_path)
    record = store.records()["alice.example.org"]
    assert (record.serial, record.domains, record.key_type) == ("5f3a9c", ("alice.example.org", "*.alice.example.org"),
                                                                "ecdsa")
    assert [(issued.domains, issued.renewal) for issued in store.history("https://127.0.0.1:14000/dir")] == [
        (("alice.example.org", "*.alice.example.org"), False)]
    store.close()
    ledger = state.Ledger(tmp_path, "export1", "alice.example.org")
    assert ledger.status() == "started" and ledger.get("file:1")["path"] == "/Documents/a.txt"
    ledger.close()
    again = state.connect(tmp_path)  # opening it again changes nothing
    assert state.schema_version(again) == 4
    again.close()


def test_a_failed_upgrade_leaves_the_database_as_it_was(tmp_path):
    raw = sqlite3.connect(copy(tmp_path) / "state.db")
    raw.execute("CREATE INDEX by_deployed ON certificates (deployed)")  # DROP COLUMN then fails
    raw.commit()
    raw.close()
    with pytest.raises(state.StateError) as failed:
        state.connect(tmp_path)
    assert str(tmp_path / "state.db") in str(failed.value) and "from version 1" in str(failed.value)
    raw = sqlite3.connect(tmp_path / "state.db")
    assert raw.execute("PRAGMA user_version").fetchone() == (0,)
    assert columns(raw, "challenges") == [] and "deployed" in columns(raw, "certificates")
    assert columns(raw, "v2_ledger")  # (the fixture had it; nothing of the upgrade stayed)
    assert "order_url" not in columns(raw, "issuances")
    raw.close()


def test_a_new_database_is_created_at_the_current_version(tmp_path):
    db = state.connect(tmp_path / "new")
    assert state.schema_version(db) == state.SCHEMA_VERSION
    assert "deployed" not in columns(db, "certificates") and columns(db, "v2_imports")
    db.close()


def test_a_newer_database_is_refused_with_one_line_naming_it(tmp_path, capsys):
    from tests.unit.test_json_unchanged import FIXTURES

    fleet = tmp_path / "golden"
    shutil.copytree(FIXTURES / "golden-fleet", fleet)
    (fleet / ".cozyops").mkdir()
    db = sqlite3.connect(fleet / ".cozyops/state.db")
    db.execute("CREATE TABLE future (x)")
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(SystemExit) as done:
        cli.main(["cert", "ls", "--fleet", str(fleet)])
    out, err = capsys.readouterr()
    assert done.value.code == 1 and out == "" and err.count("\n") == 1
    assert str(fleet / ".cozyops/state.db") in err and "schema version 99" in err and "newer cozyops" in err
    db = sqlite3.connect(fleet / ".cozyops/state.db")
    assert db.execute("PRAGMA user_version").fetchone() == (99,)  # left as it is
    db.close()


def test_the_challenge_journal_keeps_what_is_not_removed(tmp_path):
    db = state.connect(tmp_path)
    first = state.Challenges(db, run="run 1")
    first.add("example.org", [("_acme-challenge.a.example.org.", "v1"), ("_acme-challenge.a.example.org.", "v2")])
    first.add("challenges.example.net", [("a.challenges.example.net.", "v3")])
    first.remove("example.org", [("_acme-challenge.a.example.org.", "v1")])
    second = state.Challenges(db, run="run 2")
    assert second.left() == {"example.org": [("_acme-challenge.a.example.org.", "v2")],
                             "challenges.example.net": [("a.challenges.example.net.", "v3")]}
    assert first.left() == {}  # only other runs' by default
    db.close()


def test_journaled_steps_continue_after_the_last_one_done(tmp_path):
    steps = state.Steps(tmp_path, "move", "alice.example.org")
    assert steps.status() == "new" and steps.params() is None
    assert steps.start({"to": "h2"}) == {"to": "h2"} and steps.new
    steps.record("create", {"instance": "abc"})
    steps.close()
    # a run killed here: the next one continues with the first run's parameters
    again = state.Steps(tmp_path, "move", "alice.example.org")
    assert again.status() == "started"
    assert again.start({"to": "h3"}) == {"to": "h2"} and not again.new
    assert again.done("create") and not again.done("export")
    assert again.result("create") == {"instance": "abc"} and again.result("export") is None
    again.record("export")
    assert [step for step, _ in again.steps()] == ["create", "export"]
    again.finish("moved")
    assert again.status() == "finished" and again.outcome() == "moved"
    # a finished operation started again begins anew, its steps gone
    assert again.start({"to": "h3"}) == {"to": "h3"} and again.new and not again.done("create")
    again.forget()
    assert again.status() == "new" and again.steps() == []
    other = state.Steps(tmp_path, "install", "alice.example.org")  # another kind, same subject: apart
    assert other.status() == "new"
    other.close()
    again.close()
