"""Schema 4: what a fleet owns (state.Owned), and a version-3 database upgraded to it keeping its rows."""

from __future__ import annotations

import sqlite3

from cozyops import state


def test_a_version_3_database_is_upgraded_keeping_its_steps(tmp_path):
    db = sqlite3.connect(tmp_path / "state.db")
    db.executescript(state.SCHEMA_V1 + "".join(state.UPGRADES[n] for n in (1, 2)))
    db.execute("INSERT INTO operations (kind, subject, params, started) VALUES ('move', 'a.example.org', '{}', 'x')")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    upgraded = state.connect(tmp_path)
    assert state.schema_version(upgraded) == 4
    assert upgraded.execute("SELECT subject FROM operations").fetchall() == [("a.example.org",)]
    assert [row[1] for row in upgraded.execute("PRAGMA table_info(owned)")] == [
        "kind", "name", "server", "origin", "settings", "at"]
    upgraded.close()


def test_owned_records_keep_their_origin_and_take_new_settings(tmp_path):
    with state.Owned(tmp_path) as owned:
        owned.put("instance", "alice.example.org", "h1", "adopted", {"email": "a@example.org"})
        owned.put("instance", "alice.example.org", "h2", "created", {"tz": "Europe/Paris"})
        owned.put("site", "alice.example.org", "h2")
        assert owned.get("instance", "alice.example.org") == {
            "server": "h2", "origin": "adopted", "settings": {"tz": "Europe/Paris"},
            "at": owned.get("instance", "alice.example.org")["at"]}
        assert set(owned.all("instance")) == {"alice.example.org"} and set(owned.all("site")) == {"alice.example.org"}
        owned.drop("instance", "alice.example.org")
        assert owned.get("instance", "alice.example.org") is None and owned.all("instance") == {}
        assert owned.server_digest("h1") is None
        owned.set_server_digest("h1", "abc")
        assert owned.server_digest("h1") == "abc"
        owned.set_server_digest("h1", None)
        assert owned.server_digest("h1") is None


def test_a_reentrant_fleet_lock_lets_its_process_take_it_again_and_no_one_else(tmp_path):
    import pytest

    with state.fleet_lock(tmp_path, "f", "apply", reentrant=True):
        with state.fleet_lock(tmp_path, "f", "server provision"):  # inside: apply provisions
            pass
        assert "apply" in (tmp_path / "lock").read_text()
    with state.fleet_lock(tmp_path, "f", "plain"), pytest.raises(state.LockedError):
        with state.fleet_lock(tmp_path, "f", "again"):
            pass
