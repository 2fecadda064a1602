"""Provisioning fresh lab hosts from the lab's apt repository with playbooks/site.yml.

On a lab of its own (two fresh hosts): `ansible-playbook --check` on a fresh host changes
nothing; plain `ansible-playbook` (no cozyops) provisions h2; `cozyops server provision`
provisions h1; a second run reports 0 changed on both; `--check --diff` too; cozy-stack and nginx
answer there and `cozy-stack instances add` works.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import own_lab

# Provisioning fresh hosts (apt, packages, services) takes minutes on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(1500)
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
SITE = str(Path(__file__).resolve().parents[2] / "playbooks" / "site.yml")


@pytest.fixture(scope="module")
def fresh_lab(tmp_path_factory):
    with own_lab(tmp_path_factory, "p", hosts_wanted=2) as lab:
        yield lab


def inside(lab, argv: list[str], timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """``argv`` inside the lab's namespace (as `cozyops lab exec` runs it)."""
    return subprocess.run(
        [sys.executable, "-m", "cozyops", "lab", "exec", "--dir", str(lab.dir), "--", *argv],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


def on_host(lab, host: str, command: str) -> subprocess.CompletedProcess:
    return inside(lab, ["ssh", "-F", str(lab.host_files.ssh_config), host, command], timeout=120)


def plain_ansible(lab, *args: str) -> subprocess.CompletedProcess:
    """ansible-playbook itself, with the fleet directory as its inventory; Ansible's files in the lab."""
    home = lab.dir / "plain-ansible"
    return inside(lab, [ANSIBLE_PLAYBOOK, "-i", str(lab.fleet_dir / "hosts.yml"), SITE, *args], env={
        "ANSIBLE_HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(home / "tmp"), "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(home / "cp"), "ANSIBLE_SSH_ARGS": "-o ControlMaster=no",
    })


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP lines: {host: {ok, changed, unreachable, failed, ...}}."""
    found = {}
    for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.M):
        found[host] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counts)}
    return found


def provision(lab, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    result = inside(lab, [sys.executable, "-m", "cozyops", "server", "provision", "--fleet", str(lab.fleet_dir),
                          "--json", *args])
    return result, json.loads(result.stdout) if result.stdout.strip() else {}


def test_check_mode_on_a_fresh_host_shows_changes_and_does_nothing(fresh_lab):
    result = plain_ansible(fresh_lab, "--check", "--diff", "--limit", "h2")
    counts = recap(result.stdout)
    assert result.returncode == 0, result.stdout[-3000:]
    # the keyring, the repository's line, debconf answers: shown as changes...
    assert counts["h2"]["failed"] == 0 and counts["h2"]["changed"] >= 3, counts
    assert "+++ after: /etc/apt/sources.list.d/cozy.list" in result.stdout
    # ...and none made
    installed = on_host(fresh_lab, "h2", "dpkg-query -W -f='${Status}' cozy-stack couchdb nginx 2>&1; "
                                         "ls /etc/apt/sources.list.d/")
    assert "install ok installed" not in installed.stdout and "cozy.list" not in installed.stdout


def test_plain_ansible_playbook_provisions_a_host(fresh_lab):
    result = plain_ansible(fresh_lab, "--limit", "h2")
    counts = recap(result.stdout)
    assert result.returncode == 0, result.stdout[-3000:]
    assert counts["h2"]["failed"] == 0 and counts["h2"]["changed"] > 5, counts
    status = on_host(fresh_lab, "h2", "cozy-stack status && curl -s http://127.0.0.1:5984/ && nginx -t 2>&1")
    assert status.returncode == 0, status.stdout + status.stderr
    assert '"couchdb"' in status.stdout.lower() or "pouchdb" in status.stdout.lower()


def test_server_provision_then_nothing_to_change(fresh_lab):
    first, summary = provision(fresh_lab, "h1")
    assert first.returncode == 0, first.stderr[-3000:]
    assert set(summary["hosts"]) == {"h1"} and summary["hosts"]["h1"]["changed"] > 5, summary
    assert (fresh_lab.fleet_dir / ".cozyops" / "runs" / summary["run"] / "job_events").is_dir()

    # Package lists older than cozy_apt_cache_valid_time are refreshed, which is not a change:
    # a day-old run is aged here (apt's module goes by the lists' time, or by this stamp).
    for host in ("h1", "h2"):
        aged = on_host(fresh_lab, host, "touch -d '2 days ago' /var/lib/apt/lists; stamp="
                                        "/var/lib/apt/periodic/update-success-stamp; "
                                        "if [ -e $stamp ]; then touch -d '2 days ago' $stamp; fi")
        assert aged.returncode == 0, aged.stderr
    second, again = provision(fresh_lab)
    assert second.returncode == 0, second.stderr[-3000:]
    assert set(again["hosts"]) == {"h1", "h2"}
    for host, counts in again["hosts"].items():
        assert counts == {"ok": counts["ok"], "changed": 0, "failed": 0, "unreachable": 0}, (host, counts)
        assert counts["ok"] > 10

    check, dry = provision(fresh_lab, "--check", "--diff")
    assert check.returncode == 0, check.stderr[-3000:]
    assert all(counts["changed"] == 0 and counts["failed"] == 0 for counts in dry["hosts"].values()), dry


def test_the_provisioned_stack_adds_an_instance(fresh_lab):
    domain = f"p{secrets.token_hex(3)}.{fresh_lab.spec.zone}"
    added = on_host(fresh_lab, "h1", "COZY_ADMIN_PASSPHRASE=$(cat /etc/cozy/.cozy-admin-passphrase) "
                                     f"cozy-stack instances add --apps drive {domain} && "
                                     "COZY_ADMIN_PASSPHRASE=$(cat /etc/cozy/.cozy-admin-passphrase) "
                                     "cozy-stack instances ls")
    assert added.returncode == 0, added.stderr
    assert domain in added.stdout
    layout = on_host(fresh_lab, "h1", "stat -c '%n %a %U' /etc/cozy/.cozy-admin-passphrase /etc/cozy/vault.enc "
                                      "/etc/cozy/cozy.yml.local; nft list ruleset | grep -c 'dport'")
    assert layout.returncode == 0, layout.stderr
    assert "/etc/cozy/.cozy-admin-passphrase 600 root" in layout.stdout
    assert "/etc/cozy/vault.enc 600 cozy-stack" in layout.stdout


def test_an_unknown_host_is_one_clear_error(fresh_lab):
    result, _ = provision(fresh_lab, "h9")
    assert result.returncode == 1
    assert "has no server h9" in result.stderr and "Traceback" not in result.stderr


def test_https_on_the_app_subdomains_through_nginx(fresh_lab):
    """Nested mode: after provision (the instance's site), `cert issue --deploy` (pebble, DNS-01),
    alice.ZONE and drive.alice.ZONE answer over HTTPS through nginx with a certificate valid for
    the lab's CA alone, and reach the instance's cozy-stack; HTTP redirects to HTTPS."""
    zone = fresh_lab.spec.zone
    name = f"n{secrets.token_hex(3)}"
    domain = f"{name}.{zone}"
    (fresh_lab.fleet_dir / "instances.yml").write_text(
        json.dumps({"instances": [{"domain": domain, "server": "h1", "apps": ["drive"]}]}))
    provisioned, summary = provision(fresh_lab, "h1")
    assert provisioned.returncode == 0, provisioned.stderr[-3000:]
    added = on_host(fresh_lab, "h1", "COZY_ADMIN_PASSPHRASE=$(cat /etc/cozy/.cozy-admin-passphrase) "
                                     f"cozy-stack instances add --apps drive {domain}")
    assert added.returncode == 0, added.stderr
    issued = inside(fresh_lab, [sys.executable, "-m", "cozyops", "cert", "issue", "--deploy", "--json",
                                "--fleet", str(fresh_lab.fleet_dir)])
    assert issued.returncode == 0, issued.stderr[-3000:]
    address = next(h.address for h in fresh_lab.spec.hosts(2) if h.name == "h1")
    root = str(fresh_lab.pebble().issuing_root)

    def curl(host: str, *extra: str, scheme: str = "https") -> subprocess.CompletedProcess:
        port = 443 if scheme == "https" else 80
        return inside(fresh_lab, ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                                  "--cacert", root, "--resolve", f"{host}:{port}:{address}", *extra,
                                  f"{scheme}://{host}/"], timeout=60)

    apex = curl(domain)
    assert apex.returncode == 0, apex.stderr  # curl verified the certificate against the lab's root only
    app = curl(f"drive.{domain}")
    assert app.returncode == 0, app.stderr
    code, location = app.stdout.split(" ", 1)
    # the double's answer for an app host without a session: its instance's login page, back to the app
    assert code == "302" and location.startswith(f"https://{domain}/auth/login?redirect="), app.stdout
    plain = curl(f"drive.{domain}", scheme="http")
    assert plain.stdout == f"301 https://drive.{domain}/", plain.stdout
