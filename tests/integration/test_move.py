"""`cozyops instance move` between two provisioned lab hosts (h1 -> h2), killed (SIGKILL, through
the test hook COZYOPS_MOVE_KILL_AT) at every step boundary, after a step's action and before its
journal entry, and in the middle of the import; each run continued by the same command. At the
end the target holds what the source held (files with sizes and MD5s, documents: through the
public API), there is one instance on the target, the source is kept (blocked MOVED), and the
instance answers over HTTPS on an app subdomain from the target. `--abort` gives a source back.
"""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import own_lab

pytestmark = pytest.mark.timeout(3600)
KILLS = ["checks", "create:acted", "create", "block", "export", "import:middle", "import", "verify", "switch",
         "unblock"]


@pytest.fixture(scope="module")
def move_lab(tmp_path_factory):
    with own_lab(tmp_path_factory, "m", hosts_wanted=2, with_stack=True) as lab:
        yield lab


def inside(lab, function):
    from cozyops.lab import netns

    return netns.inside(lab.spec.netns, function)


def cozyops(lab, *args: str, kill_at: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "COZYOPS_MOVE_KILL_AT": kill_at}
    return subprocess.run(
        [sys.executable, "-m", "cozyops", "lab", "exec", "--dir", str(lab.dir), "--",
         sys.executable, "-m", "cozyops", *args, "--fleet", str(lab.fleet_dir)],
        capture_output=True, text=True, timeout=1800, env=env,
    )


def holders(path) -> list[str]:
    """The processes that have ``path`` open (what holds the fleet's lock), for a failure's message."""
    found = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == str(path) for fd in fd_dir.iterdir()):
                found.append((fd_dir.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:300])
        except OSError:
            continue
    return found


def fleet(lab):
    from cozyops import inventory

    return inventory.load(lab.fleet_dir)


def snapshot(lab, server: str, domain: str) -> dict:
    """The instance's file tree (path -> type, size, MD5) and contacts, through the public API."""
    from cozyops.stack.connect import connect
    from cozyops.stack.public import ROOT_ID

    def read():
        model = fleet(lab)
        with connect(model, model.servers[server]) as stack:
            token = stack.admin.token(domain, scope="io.cozy.files io.cozy.contacts")
            public = stack.public(domain, token)
            tree, todo = {}, [(ROOT_ID, "")]
            while todo:
                dir_id, path = todo.pop()
                for child in public.children(dir_id):
                    child_path = f"{path}/{child.name}"
                    tree[child_path] = (child.type, child.size, child.md5sum)
                    if child.is_dir:
                        todo.append((child.id, child_path))
            contacts = sorted((row["id"], row["doc"].get("fullname")) for row in public.all_docs("io.cozy.contacts")
                              if not row["id"].startswith("_design/"))
            return {"tree": tree, "contacts": contacts}

    return inside(lab, read)


def admin_state(lab, server: str, domain: str) -> dict | None:
    from cozyops.stack import StackError
    from cozyops.stack.connect import connect

    def read():
        model = fleet(lab)
        with connect(model, model.servers[server]) as stack:
            try:
                inst = stack.admin.instance(domain)
            except StackError as error:
                if error.status == 404:
                    return None
                raise
            same = [i for i in stack.admin.instances() if i.domain == domain]
            return {"blocked": inst.blocked, "reason": inst.attributes.get("blocking_reason"), "count": len(same)}

    return inside(lab, read)


@pytest.fixture(scope="module")
def moving(move_lab):
    lab = move_lab
    zone = lab.spec.zone
    # The lab's fleet sets cozy_stack_trusted_networks: [127.0.0.1/32], so the provisioned cozy.yml
    # trusts the loopback where the move hands the target its export.
    path = lab.fleet_dir / "instances.yml"
    path.write_text(
        "# The lab's instances (a comment the move must keep).\ninstances:\n"
        f"  - domain: bob.{zone}\n    server: h1  # bob's server\n    apps: [home, drive, settings]\n"
        f"    email: bob@{zone}\n    locale: en\n"
        f"  - domain: carol.{zone}\n    server: h1\n    apps: [home, drive, settings]\n    locale: fr\n"
    )
    from cozyops.lab import demo

    inside(lab, lambda: demo.instances_on_their_servers(lab))
    for name in ("bob", "carol"):
        inside(lab, lambda name=name: _fill(lab, f"{name}.{zone}"))
    inside(lab, lambda: demo.dns_for_the_fleet(lab))
    inside(lab, lambda: demo.certificates_for_the_fleet(lab))
    return lab


def _fill(lab, domain: str) -> None:
    from cozyops.stack.connect import connect
    from cozyops.stack.public import ROOT_ID

    model = fleet(lab)
    with connect(model, model.servers["h1"]) as stack:
        public = stack.public(domain, stack.admin.token(domain, scope="io.cozy.files io.cozy.contacts"))
        docs = public.mkdir(ROOT_ID, "Docs")
        sub = public.mkdir(docs.id, "Deep")
        public.upload(docs.id, "notes.txt", b"hello from " + domain.encode())
        public.upload(sub.id, "blob.bin", secrets.token_bytes(700_000))
        public.upload(ROOT_ID, "empty.txt", b"")
        for number in range(3):
            public.create_doc("io.cozy.contacts", {"fullname": f"Contact {number} of {domain}"})


def https_answer(lab, server: str, name: str) -> tuple[int, str]:
    """GET / on ``name`` at the server's address over HTTPS, the certificate checked against pebble's root."""
    address = fleet(lab).servers[server].ipv4

    def get():
        context = ssl.create_default_context(cafile=str(lab.pebble().issuing_root))
        with socket.create_connection((address, 443), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=name) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
        head = data.split(b"\r\n", 1)[0].decode()
        return int(head.split()[1]), head

    return inside(lab, get)


def test_abort_gives_the_source_back(moving):
    lab = moving
    domain = f"carol.{lab.spec.zone}"
    before = snapshot(lab, "h1", domain)
    killed = cozyops(lab, "instance", "move", domain, "--to", "h2", "--yes", kill_at="export")
    assert killed.returncode != 0, killed.stderr
    assert admin_state(lab, "h1", domain)["reason"] == "MOVING"
    assert admin_state(lab, "h2", domain) is not None
    aborted = cozyops(lab, "instance", "move", domain, "--abort", "--json")
    assert aborted.returncode == 0, aborted.stderr
    assert admin_state(lab, "h1", domain) == {"blocked": False, "reason": None, "count": 1}
    assert admin_state(lab, "h2", domain) is None
    assert snapshot(lab, "h1", domain) == before
    again = cozyops(lab, "instance", "move", domain, "--abort")
    assert again.returncode == 1 and "no move under way" in again.stderr


def test_a_move_killed_at_every_step_ends_as_one_move(moving):
    lab = moving
    domain = f"bob.{lab.spec.zone}"
    before = snapshot(lab, "h1", domain)
    assert len([p for p, v in before["tree"].items() if v[0] == "file"]) >= 3 and len(before["contacts"]) >= 3
    runs = []
    for point in KILLS:
        killed = cozyops(lab, "instance", "move", domain, "--to", "h2", "--yes", kill_at=point)
        runs.append((point, killed.returncode, killed.stderr.strip().splitlines()[-1:]))
        assert killed.returncode in (-9, 137), (runs, holders(lab.fleet_dir / ".cozyops" / "lock"))
        assert "Traceback" not in killed.stderr, killed.stderr[-3000:]
    done = cozyops(lab, "instance", "move", domain, "--to", "h2", "--yes", "--json")
    assert done.returncode == 0, (done.stderr[-3000:], holders(lab.fleet_dir / ".cozyops" / "lock"))
    assert snapshot(lab, "h2", domain) == before
    assert admin_state(lab, "h2", domain) == {"blocked": False, "reason": None, "count": 1}
    assert admin_state(lab, "h1", domain) == {"blocked": True, "reason": "MOVED", "count": 1}
    text = (lab.fleet_dir / "instances.yml").read_text()
    assert "# The lab's instances (a comment the move must keep)." in text and "# bob's server" in text
    assert f"domain: bob.{lab.spec.zone}\n    server: h2" in text
    status, head = https_answer(lab, "h2", f"drive.{domain}")
    assert status < 500, head
    finished = cozyops(lab, "instance", "move", domain, "--to", "h2", "--yes")
    assert finished.returncode == 1 and "is on h2 already" in finished.stderr


def test_apply_removes_a_moved_source_once_its_keep_days_are_over(moving):
    import json

    lab = moving
    domain = f"carol.{lab.spec.zone}"
    before = snapshot(lab, "h1", domain)
    moved = cozyops(lab, "instance", "move", domain, "--to", "h2", "--yes", "--keep-days", "0")
    assert moved.returncode == 0, moved.stderr[-3000:]
    assert snapshot(lab, "h2", domain) == before
    assert admin_state(lab, "h1", domain) == {"blocked": True, "reason": "MOVED", "count": 1}
    planned = cozyops(lab, "plan", "--json")
    assert planned.returncode == 0, planned.stderr[-3000:]
    plan = json.loads(planned.stdout)
    removal = [c for c in plan["changes"] if c["kind"] == "moved"]
    assert [(c["action"], c["key"]) for c in removal] == [("delete", [domain, "h1"])], plan["changes"]
    # bob's move (the test before) keeps its source 7 days: shown, not removed
    kept = [m for m in plan["moves"] if m["domain"] == f"bob.{lab.spec.zone}"]
    assert kept and kept[0]["removal_due"] is False and kept[0]["source"] == "h1", plan["moves"]
    applied = cozyops(lab, "apply", "--yes", "--checksum", plan["checksum"])
    assert applied.returncode == 0, applied.stderr[-3000:]
    assert admin_state(lab, "h1", domain) is None
    assert admin_state(lab, "h2", domain) == {"blocked": False, "reason": None, "count": 1}
    assert admin_state(lab, "h1", f"bob.{lab.spec.zone}") == {"blocked": True, "reason": "MOVED", "count": 1}
    again = json.loads(cozyops(lab, "plan", "--json").stdout)
    assert not [c for c in again["changes"] if c["kind"] == "moved"]
    assert not [m for m in again["moves"] if m["domain"] == domain]
