"""Bringing labs up and down: side by side, and leaving nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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
    up = cli("lab", "up", "--id", other_id, "--dir", str(other_dir), "--zone", "side.test", "--hosts", "1", "--json")
    try:
        assert up.returncode == 0, up.stderr
        status = json.loads(up.stdout)
        assert status["ok"] and status["zone"] == "side.test"
        assert status["subnet"] != str(lab.spec.subnet)
        assert [host["name"] for host in status["hosts"]] == ["h1"] and status["hosts"][0]["ok"]
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
    # The hosts' overlays lived in their own mount namespaces: no process anywhere still sees them.
    for mountinfo in Path("/proc").glob("[0-9]*/mountinfo"):
        try:
            assert str(other_dir) not in mountinfo.read_text(), f"{mountinfo} shows a mount of the lab"
        except OSError:  # the process ended while being read
            pass
    # A second down is harmless, and the lab keeps its zones for the next `up`.
    again = cli("lab", "down", "--dir", str(other_dir))
    assert again.returncode == 0, again.stderr
    after = json.loads(cli("lab", "status", "--dir", str(other_dir), "--json").stdout)
    assert (after["up"], after["zone"], after["id"]) == (False, "side.test", other_id)
    assert lab.status()["ok"]


def host_ssh(lab: Lab, host: str, command: str) -> subprocess.CompletedProcess:
    argv, env = lab.exec_argv(["ssh", "-F", str(lab.host_files.ssh_config), host, command])
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def test_hosts_are_added_killed_with_their_init_and_keep_their_disk(tmp_path):
    require_lab()
    fresh = Lab.open(new_lab_id("v"), tmp_path / "v")
    try:
        fresh.up(hosts_wanted=1)
        first = {p.name: p.pid for p in fresh.state().processes}
        started = host_ssh(fresh, "h1", "echo kept > /root/disk; setsid sleep 600 </dev/null >/dev/null 2>&1 &")
        assert started.returncode == 0, started.stderr
        # More hosts than running: the missing one is added, nothing running is restarted.
        fresh.up(hosts_wanted=2)
        now = {p.name: p.pid for p in fresh.state().processes}
        assert set(now) == set(first) | {"host-h2"} and all(now[name] == pid for name, pid in first.items())
        assert host_ssh(fresh, "h2", "hostname").stdout.strip() == "h2"
        # Killing a host's init ends every process of that host.
        h1 = fresh.spec.host(1)
        assert subprocess.run(["ip", "netns", "pids", h1.netns], capture_output=True, text=True).stdout.split()
        os.kill(first["host-h1"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while subprocess.run(["ip", "netns", "pids", h1.netns], capture_output=True, text=True).stdout.split():
            assert time.monotonic() < deadline, "processes of h1 outlived its init"
            time.sleep(0.05)
        assert not fresh.status()["ok"]
        # `up` boots it again, with its disk as it was.
        fresh.up()
        assert fresh.status()["ok"]
        assert host_ssh(fresh, "h1", "cat /root/disk").stdout.strip() == "kept"
        assert host_ssh(fresh, "h1", "pgrep -x sleep").returncode == 1
        fresh.down()
        assert fresh.status()["up"] is False
        fresh.up()
        assert fresh.status()["ok"] and len(fresh.status()["hosts"]) == 2
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
