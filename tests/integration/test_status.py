"""`cozyops status` on a lab fleet (issue 22): two provisioned hosts, instances on both (one
onboarded with a quota, one the fleet places but never created, one created behind the fleet's
back), certificates from the lab's pebble; `--json` and `--prometheus` checked for content, and
the `--html` page rendered by Debian's chromium, headless, its screenshot kept as the test's
artifact: ``<pytest tmp>/test_the_page_renders_in_chromium0/status.png`` (the test prints it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys

import pytest

from cozyops.lab import aptrepo
from tests.conftest import own_lab

pytestmark = pytest.mark.timeout(1800)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-first-run", "--hide-scrollbars"]


def inside(lab, argv: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cozyops", "lab", "exec", "--dir", str(lab.dir), "--", *argv],
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def on_host(lab, host: str, command: str) -> subprocess.CompletedProcess:
    return inside(lab, ["ssh", "-F", str(lab.host_files.ssh_config), host, command], timeout=120)


def cozyops(lab, *args: str) -> subprocess.CompletedProcess:
    return inside(lab, [sys.executable, "-m", "cozyops", *args, "--fleet", str(lab.fleet_dir)])


@pytest.fixture(scope="module")
def status_lab(tmp_path_factory):
    placed = [("alice", "h1"), ("bob", "h1"), ("carol", "h2"), ("dave", "h2")]  # dave: never created

    def place(lab) -> None:
        lab.fleet_dir.mkdir(parents=True, exist_ok=True)
        (lab.fleet_dir / "instances.yml").write_text(json.dumps({"instances": [
            {"domain": f"{name}.{lab.spec.zone}", "server": host, "apps": ["drive"]} for name, host in placed]}))

    with own_lab(tmp_path_factory, "s", place, hosts_wanted=2, with_stack=True) as lab:
        zone = lab.spec.zone
        admin = "COZY_ADMIN_PASSPHRASE=$(cat /etc/cozy/.cozy-admin-passphrase) cozy-stack instances"
        for command, host in (
            (f"add --apps drive --disk-quota 1GB alice.{zone} && {admin} modify --onboarding-finished alice.{zone}",
             "h1"),
            (f"add --apps drive bob.{zone}", "h1"),
            (f"add --apps drive carol.{zone} && {admin} add eve.{zone}", "h2"),  # eve: not in the fleet
        ):
            done = on_host(lab, host, f"{admin} {command}")
            assert done.returncode == 0, done.stderr
        issued = cozyops(lab, "cert", "issue", "--json")
        assert issued.returncode == 0, issued.stderr[-3000:]
        yield lab


@pytest.fixture(scope="module")
def collected(status_lab, tmp_path_factory):
    out = tmp_path_factory.mktemp("status")
    page, metrics = out / "status.html", out / "cozyops.prom"
    done = cozyops(status_lab, "status", "--json", "--html", str(page), "--prometheus", str(metrics))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout), page, metrics


def test_json_shows_servers_instances_certificates_drift_and_runs(status_lab, collected):
    data, _, _ = collected
    zone = status_lab.spec.zone
    base = aptrepo.stack_versions(aptrepo.find())["base"]
    servers = {s["name"]: s for s in data["servers"]}
    assert set(servers) == {"h1", "h2"}
    for server in servers.values():
        assert server["reachable"] and server["healthy"] and server["status"] == "OK", server
        assert server["version"] == server["package"] == base
        assert server["disk"]["size"] > server["disk"]["available"] > 0
    assert servers["h1"]["instances"] == 2 and servers["h2"]["instances"] == 2
    instances = {i["domain"]: i for i in data["instances"]}
    assert {d: (i["server"], i["state"]) for d, i in instances.items()} == {
        f"alice.{zone}": ("h1", "ready"), f"bob.{zone}": ("h1", "onboarding"),
        f"carol.{zone}": ("h2", "onboarding"), f"dave.{zone}": ("h2", "missing"), f"eve.{zone}": ("h2", "unknown")}
    alice = instances[f"alice.{zone}"]
    assert alice["quota"] > 0 and alice["used"] is not None and 0 <= alice["quota_use"] < 1
    certs = {c["name"]: c for c in data["certificates"]}
    assert set(certs) == {f"{name}.{zone}" for name in ("alice", "bob", "carol", "dave")}
    assert all(c["status"] == "valid" and c["days_left"] > 1 for c in certs.values()), certs
    # nothing applied to the zone yet: the plan would create the instances' records
    assert data["dns"]["checked"] and data["dns"]["drifted"], data["dns"]
    assert any(c["name"] == f"alice.{zone}." and c["action"] == "create" for c in data["dns"]["changes"])
    provision = [r for r in data["runs"] if r["kind"] == "provision"]
    assert provision and provision[0]["ok"] and set(provision[0]["hosts"]) == {"h1", "h2"}
    assert data["ok"] is False and data["summary"]["instances"]["missing"] == 1


def test_prometheus_textfile(status_lab, collected):
    _, _, metrics = collected
    text = metrics.read_text()
    fleet = f"lab-{status_lab.spec.id}"
    zone = status_lab.spec.zone
    values = dict(re.findall(r"^(\S+\{[^}]*\}) (\S+)$", text, re.M))
    assert values[f'cozyops_server_up{{fleet="{fleet}",server="h1"}}'] == "1"
    assert values[f'cozyops_server_instances{{fleet="{fleet}",server="h2"}}'] == "2"
    assert values[f'cozyops_instances{{fleet="{fleet}",state="missing"}}'] == "1"
    assert float(values[f'cozyops_certificate_days_left{{fleet="{fleet}",certificate="alice.{zone}"}}']) > 1
    assert float(values[f'cozyops_last_run_success{{fleet="{fleet}",kind="provision"}}']) == 1
    assert int(values[f'cozyops_dns_drift_records{{fleet="{fleet}"}}']) > 0
    assert "# TYPE cozyops_certificate_expiry_timestamp_seconds gauge" in text


def png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", header[16:24])


def test_the_page_renders_in_chromium(status_lab, collected, tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing (./dev test installs it)"
    _, page, _ = collected
    zone = status_lab.spec.zone
    shot = tmp_path / "status.png"
    argv = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    taken = subprocess.run([*argv, "--window-size=1280,2200", f"--screenshot={shot}", page.as_uri()],
                           capture_output=True, text=True, timeout=180)
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    print(f"status page screenshot: {shot}")
    assert png_size(shot) == (1280, 2200) and shot.stat().st_size > 30_000  # a page drawn, not a blank one
    dom = subprocess.run([*argv, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shown = dom.stdout
    for text in ("h1", "h2", f"alice.{zone}", f"dave.{zone}", "missing", "Certificate expiry"):
        assert text in shown, text
    chart = shown[shown.index('aria-label="certificate expiry over time"'):]
    chart = chart[:chart.index("</svg>")]
    assert chart.count("<rect") == 4 and "alice." in chart  # a bar per certificate
    servers_chart = shown[shown.index('aria-label="instances per server"'):]
    assert servers_chart[:servers_chart.index("</svg>")].count("<rect") >= 2
    source = page.read_text()
    for external in ("<link", "<script", " src=", " href=", "url(", "@import"):  # no external assets
        assert external not in source, external
