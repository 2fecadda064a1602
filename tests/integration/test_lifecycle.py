"""Bringing labs up and down: side by side, and leaving nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cozyops.lab import netns
from cozyops.lab.lab import Lab
from tests.conftest import new_lab_id, require_lab


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cozyops", *args], capture_output=True, text=True, timeout=120)


def test_two_labs_side_by_side_and_down_leaves_nothing(lab, tmp_path):
    require_lab()
    other_id = new_lab_id("u")
    other_dir = tmp_path / "other"
    up = cli("lab", "up", "--id", other_id, "--dir", str(other_dir), "--zone", "side.test", "--json")
    try:
        assert up.returncode == 0, up.stderr
        status = json.loads(up.stdout)
        assert status["ok"] and status["zone"] == "side.test"
        assert status["subnet"] != str(lab.spec.subnet)
        assert lab.status()["ok"]  # the session's lab is untouched
    finally:
        down = cli("lab", "down", "--dir", str(other_dir))
    assert down.returncode == 0, down.stderr
    # Nothing of the lab is left: no process (not even a zombie: `down` waits until the daemons,
    # re-parented to this test process, have been reaped), no namespace, no mount.
    for pid in status["pids"]:
        assert not Path(f"/proc/{pid}").exists(), f"pid {pid} still exists"
    for name in status["namespaces"]:
        assert not netns.exists(name)
    assert not any(other_id in name for name in netns.names())
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(other_dir) not in mounts
    # A second down is harmless, and the lab keeps its zones for the next `up`.
    again = cli("lab", "down", "--dir", str(other_dir))
    assert again.returncode == 0, again.stderr
    after = json.loads(cli("lab", "status", "--dir", str(other_dir), "--json").stdout)
    assert (after["up"], after["zone"], after["id"]) == (False, "side.test", other_id)
    assert lab.status()["ok"]


def test_down_then_up_starts_a_fresh_lab(tmp_path):
    require_lab()
    fresh = Lab.open(new_lab_id("v"), tmp_path / "v")
    try:
        fresh.up()
        first = {p.name: p.pid for p in fresh.state().processes}
        fresh.down()
        assert fresh.status()["up"] is False
        fresh.up()
        assert fresh.status()["ok"]
        assert {p.name: p.pid for p in fresh.state().processes} != first
    finally:
        fresh.down(purge=True)
    assert not fresh.dir.exists()
    assert not netns.exists(fresh.spec.netns)


def test_nothing_is_written_outside_the_scratch_directories():
    state, cache = os.environ["XDG_STATE_HOME"], os.environ["XDG_CACHE_HOME"]
    from cozyops import paths

    assert str(paths.state_dir()).startswith(state)
    assert str(paths.cache_dir()).startswith(cache)
