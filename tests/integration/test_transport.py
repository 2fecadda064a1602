"""The SSH transport against the lab's hosts: exec, files, port forwarding, refusals with clear errors."""

from __future__ import annotations

import dataclasses
import time
import urllib.request

import pytest

from cozyops.lab import netns
from cozyops.transport import LocalTransport, SshTransport, TransportError


def inside(lab, function):
    return netns.inside(lab.spec.netns, function)


def test_exec_gives_status_and_both_outputs(lab):
    def run():
        with SshTransport(lab.ssh_target("h1")) as ssh:
            result = ssh.run("hostname; echo oops >&2; exit 3")
            big = ssh.run(["sh", "-c", "cat | wc -c"], stdin=b"x" * 3_000_000)
            return result, big

    result, big = inside(lab, run)
    assert (result.returncode, result.stdout, result.stderr) == (3, b"h1\n", b"oops\n")
    with pytest.raises(TransportError, match="h1: hostname; echo oops >&2; exit 3: exit 3: oops"):
        result.check("h1")
    assert big.text.strip() == "3000000"


def test_put_is_atomic_with_its_mode_and_get_reads_it_back(lab):
    payload = bytes(range(256)) * 4000

    def run():
        with SshTransport(lab.ssh_target("h2")) as ssh:
            ssh.put(payload, "/root/blob.bin", 0o600)
            mode = ssh.run("stat -c %a /root/blob.bin && ls -a /root | grep -c cozyops || true").text.split()
            return ssh.get("/root/blob.bin"), mode

    back, mode = inside(lab, run)
    assert back == payload
    assert mode == ["600", "0"]  # no temporary file left beside it


def test_forwarding_reaches_a_port_on_the_servers_loopback(lab):
    def run():
        with SshTransport(lab.ssh_target("h1")) as ssh:
            ssh.run("mkdir -p /root/www").check("h1")
            ssh.put(b"through the tunnel", "/root/www/index.html")
            ssh.run("setsid python3 -m http.server --bind 127.0.0.1 18080 --directory /root/www "
                    "</dev/null >/dev/null 2>&1 &").check("h1")
            try:
                with ssh.forward(18080) as forward:
                    assert forward.local_host == "127.0.0.1" and forward.remote_port == 18080
                    deadline = time.monotonic() + 10
                    while True:
                        try:
                            pages = [urllib.request.urlopen(forward.url + "/index.html", timeout=5).read()
                                     for _ in range(3)]
                            return pages
                        except OSError:
                            if time.monotonic() > deadline:
                                raise
                            time.sleep(0.1)
            finally:
                ssh.run("pkill -f 'http.server --bind 127.0.0.1 18080'")

    assert inside(lab, run) == [b"through the tunnel"] * 3


def test_unknown_and_changed_host_keys_are_refused_with_one_clear_line(lab, tmp_path):
    target = lab.ssh_target("h1")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    swapped = tmp_path / "swapped_known_hosts"  # h2's key under h1's address
    h1, h2 = lab.spec.host(1), lab.spec.host(2)
    lines = lab.host_files.known_hosts.read_text().splitlines()
    swapped.write_text("".join(
        line.replace(h2.address, h1.address).replace(f"{h2.name},", "x,") + "\n"
        for line in lines if line.startswith("h2,")
    ))

    def connect(known_hosts):
        try:
            SshTransport(dataclasses.replace(target, known_hosts=known_hosts)).close()
        except TransportError as error:
            return str(error)
        return "connected"

    unknown = inside(lab, lambda: connect(empty))
    changed = inside(lab, lambda: connect(swapped))
    assert unknown.startswith(f"h1 (root@{h1.address}:22): host key unknown") and "refusing" in unknown
    assert changed.startswith(f"h1 (root@{h1.address}:22): host key ssh-ed25519 SHA256:")
    assert "differs from the one in" in changed and "\n" not in changed


def test_connection_errors_name_the_host(lab):
    target = dataclasses.replace(lab.ssh_target("h1"), port=2)  # nothing listens there

    def connect():
        with pytest.raises(TransportError) as refused:
            SshTransport(target, timeout=3)
        return str(refused.value)

    message = inside(lab, connect)
    assert message.startswith(f"h1 (root@{lab.spec.host(1).address}:2): cannot connect")


def test_local_transport_runs_here(tmp_path):
    local = LocalTransport()
    assert local.run(["echo", "hi"]).stdout == b"hi\n"
    local.put(b"data", str(tmp_path / "f"), 0o640)
    assert local.get(str(tmp_path / "f")) == b"data"
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640
    with local.forward(6060) as forward:
        assert forward.url == "http://127.0.0.1:6060"
