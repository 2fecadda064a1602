"""`cozyops instance ...` and `cozyops plan`/`apply` against lab hosts provisioned by `cozyops
server provision` (`lab up --with-stack`): nested mode on h1/h2 (zone BIND's), flat mode on h3
(zone Knot's, provisioned flat by `apply` itself); a second fleet on the same servers whose
instances the first lists as "not in the fleet" and never touches; instances.yml's comments kept.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.test_dns_providers import answers

pytestmark = pytest.mark.timeout(2400)
SEEN: list[str] = []  # every output, scanned for onboarding tokens in the logs at the end

HEADER = "# Our customers (this comment must survive)\n"


@pytest.fixture(scope="module")
def stack_lab(lab):
    result = subprocess.run(
        [sys.executable, "-m", "cozyops", "lab", "up", "--dir", str(lab.dir), "--hosts", "3", "--with-stack",
         "--json"], capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    return lab


def make_fleet(lab, tmp: Path, name: str, *, mode: str = "nested", hosts: tuple[str, ...] = ("h1", "h2"),
               zone: str | None = None, extra: dict | None = None) -> Path:
    fleet = tmp / name
    shutil.copytree(lab.fleet_dir, fleet, ignore=shutil.ignore_patterns(".cozyops"))
    all_vars = yaml.safe_load((fleet / "group_vars" / "all.yml").read_text())
    all_vars["cozy_fleet_name"] = name
    all_vars["cozy_subdomains"] = mode
    if zone is not None:
        all_vars["cozy_zone"] = zone
        all_vars["cozy_dns"]["server"] = lab.spec.knot_address if zone == lab.spec.zone2 else lab.spec.bind_address
    all_vars.update(extra or {})
    (fleet / "group_vars" / "all.yml").write_text(yaml.safe_dump(all_vars, sort_keys=False))
    inventory = yaml.safe_load((fleet / "hosts.yml").read_text())
    servers = inventory["all"]["children"]["cozy_servers"]["hosts"]
    inventory["all"]["children"]["cozy_servers"]["hosts"] = {h: v for h, v in servers.items() if h in hosts}
    (fleet / "hosts.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    (fleet / "instances.yml").write_text(HEADER + "instances: []\n")
    return fleet


def cozyops(lab, fleet: Path, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "cozyops", "lab", "exec", "--dir", str(lab.dir), "--", sys.executable, "-m",
         "cozyops", *args, "--fleet", str(fleet)],
        capture_output=True, text=True, timeout=timeout, env={**os.environ},
    )
    SEEN.extend([result.stdout, result.stderr])
    return result


def data(result: subprocess.CompletedProcess) -> dict:
    assert result.stdout.strip(), result.stderr[-3000:]
    return json.loads(result.stdout)


def on_host(lab, host: str, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cozyops", "lab", "exec", "--dir", str(lab.dir), "--",
         "ssh", "-F", str(lab.host_files.ssh_config), host, command], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def fleets(stack_lab, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fleets")
    t = secrets.token_hex(2)
    # the thresholds low enough that removing 2 of 3 instances is unsafe
    a = make_fleet(stack_lab, tmp, f"fa{t}", extra={"cozy_dns": {
        **yaml.safe_load((stack_lab.fleet_dir / "group_vars" / "all.yml").read_text())["cozy_dns"],
        "unsafe_changes": 1}})
    b = make_fleet(stack_lab, tmp, f"fb{t}")
    return {"a": a, "b": b, "t": t}


def test_add_creates_the_instance_with_records_certificate_and_site_keeping_comments(stack_lab, fleets):
    lab, a, t = stack_lab, fleets["a"], fleets["t"]
    first = cozyops(lab, a, "apply", "--yes", "--json")  # the servers' provisioning inputs recorded
    assert first.returncode == 0, first.stderr[-3000:]
    domain = f"a1{t}.{lab.spec.zone}"
    added = cozyops(lab, a, "instance", "add", domain, "--server", "h1", "--email", f"a@{lab.spec.zone}",
                    "--tz", "Europe/Paris", "--quota", "1GB", "--apps", "home,drive")
    assert added.returncode == 0, added.stderr[-3000:]
    assert f"{domain}: onboarding link https://{domain}/?registerToken=" in added.stderr
    text = (a / "instances.yml").read_text()
    assert text.startswith(HEADER) and f"- domain: {domain}" in text and "quota: 1GB" in text
    shown = data(cozyops(lab, a, "instance", "show", domain, "--json"))
    assert shown["state"] == "present" and shown["owned"] == "created" and shown["quota"] == 1_000_000_000
    assert shown["cert_days_left"] and shown["cert_days_left"] > 0 and set(shown["apps"]) >= {"home", "drive"}
    # the site serves the issued certificate for the instance and its app hosts
    served = on_host(lab, "h1", f"echo | openssl s_client -connect 127.0.0.1:443 -servername drive.{domain} "
                                "2>/dev/null | openssl x509 -noout -ext subjectAltName")
    assert f"*.{domain}" in served.stdout, served.stdout + served.stderr
    again = data(cozyops(lab, a, "plan", "--json"))
    assert again["changes"] == [] and again["dns"]["changes"] == [], again


def test_plan_then_apply_checksum_applies_exactly_the_reviewed_plan(stack_lab, fleets):
    lab, a, t = stack_lab, fleets["a"], fleets["t"]
    with (a / "instances.yml").open("a") as file:
        file.write(f"  # two more\n  - domain: a2{t}.{lab.spec.zone}\n    server: h2\n    locale: fr\n"
                   f"  - domain: a3{t}.{lab.spec.zone}\n    server: h2\n")
    plan = data(cozyops(lab, a, "plan", "--json"))
    created = sorted(c["key"][0] for c in plan["changes"] if c["kind"] == "instance")
    assert created == [f"a2{t}.{lab.spec.zone}", f"a3{t}.{lab.spec.zone}"]
    assert plan["counts"]["site"]["create"] == 2 and plan["dns"]["changes"]
    # the fleet changes between plan and apply: refused
    (a / "instances.yml").write_text((a / "instances.yml").read_text().replace("locale: fr", "locale: de"))
    refused = cozyops(lab, a, "apply", "--checksum", plan["checksum"])
    assert refused.returncode == 1 and f"not {plan['checksum']}" in refused.stderr, refused.stderr
    (a / "instances.yml").write_text((a / "instances.yml").read_text().replace("locale: de", "locale: fr"))
    applied = cozyops(lab, a, "apply", "--checksum", plan["checksum"], "--json")
    assert applied.returncode == 0, applied.stderr[-3000:]
    assert data(applied)["checksum"] == plan["checksum"] and not data(applied)["failed"]
    second = cozyops(lab, a, "apply", "--yes", "--json")
    assert second.returncode == 0 and data(second)["done"] == [], second.stderr
    assert "# two more" in (a / "instances.yml").read_text()


def test_a_second_fleet_on_the_same_servers_is_listed_and_untouched(stack_lab, fleets):
    lab, a, b, t = stack_lab, fleets["a"], fleets["b"], fleets["t"]
    assert cozyops(lab, b, "apply", "--yes").returncode == 0
    other = f"b1{t}.{lab.spec.zone}"
    added = cozyops(lab, b, "instance", "add", other, "--server", "h1")
    assert added.returncode == 0, added.stderr[-3000:]
    plan = data(cozyops(lab, a, "plan", "--json"))
    assert plan["changes"] == [] and plan["dns"]["changes"] == []
    assert {"domain": other, "server": "h1", "blocked": False} in plan["not_in_fleet"]
    listed = {row["domain"]: row for row in data(cozyops(lab, a, "instance", "ls", "--json"))["instances"]}
    assert listed[other]["state"] == "not in the fleet" and listed[other]["owned"] is None
    assert listed[f"a1{t}.{lab.spec.zone}"]["state"] == "present"
    # fleet a cannot remove b's instance, and its sites stay
    refused = cozyops(lab, a, "instance", "rm", other, "--yes")
    assert refused.returncode == 1 and "not an instance of the fleet" in refused.stderr
    sites = on_host(lab, "h1", "grep -l '^# cozyops fleet: ' /etc/nginx/sites-available/cozy-*")
    assert f"cozy-{other}" in sites.stdout and f"cozy-a1{t}.{lab.spec.zone}" in sites.stdout
    # provisioning h1 for fleet a leaves fleet b's site
    assert cozyops(lab, a, "apply", "--yes", "--check-servers").returncode == 0
    assert on_host(lab, "h1", f"test -e /etc/nginx/sites-enabled/cozy-{other}").returncode == 0


def test_modify_blocks_and_apps_install_reports_each_instance(stack_lab, fleets):
    lab, a, t = stack_lab, fleets["a"], fleets["t"]
    domain = f"a2{t}.{lab.spec.zone}"
    blocked = cozyops(lab, a, "instance", "modify", domain, "--blocked", "--reason", "unpaid", "--quota", "2GB")
    assert blocked.returncode == 0, blocked.stderr[-3000:]
    shown = data(cozyops(lab, a, "instance", "show", domain, "--json"))
    assert shown["state"] == "blocked (unpaid)" and shown["quota"] == 2_000_000_000
    assert "blocked: true" in (a / "instances.yml").read_text()
    assert cozyops(lab, a, "instance", "modify", domain, "--unblocked").returncode == 0
    assert data(cozyops(lab, a, "instance", "show", domain, "--json"))["state"] == "present"
    installed = cozyops(lab, a, "instance", "apps", "install", "notes", "--server", "h2", "--json")
    results = data(installed)["results"]
    assert installed.returncode == 0 and {r["domain"] for r in results} == {domain, f"a3{t}.{lab.spec.zone}"}
    assert all(r["ok"] for r in results), results
    # photos is there already (the default apps): each instance's failure, exit 1 naming them
    again = cozyops(lab, a, "instance", "apps", "install", "photos", "--server", "h2", "--json")
    assert again.returncode == 1 and not any(r["ok"] for r in data(again)["results"])
    assert "already exists" in data(again)["results"][0]["message"] and domain in again.stderr
    rolled = cozyops(lab, a, "instance", "apps", "update", "notes", "registry://notes/beta", "--server", "h2",
                     "--batch", "1", "--pause", "0.1", "--json")
    assert rolled.returncode == 0 and all("1.1.0-beta.1" in r["message"] for r in data(rolled)["results"])
    failing = cozyops(lab, a, "instance", "apps", "update", "nosuchapp", "--all", "--batch", "1", "--json")
    report = data(failing)
    assert failing.returncode == 1 and report["stopped_after_batch"] == 1 and len(report["results"]) == 1


def test_removing_most_owned_instances_needs_force(stack_lab, fleets):
    lab, a, t = stack_lab, fleets["a"], fleets["t"]
    text = (a / "instances.yml").read_text()
    kept = text.split("  # two more\n")[0]
    (a / "instances.yml").write_text(kept)
    unsafe = cozyops(lab, a, "apply", "--yes")
    assert unsafe.returncode == 2 and "--force" in unsafe.stderr, unsafe.stderr
    forced = cozyops(lab, a, "apply", "--yes", "--force", "--json")
    assert forced.returncode == 0, forced.stderr[-3000:]
    listed = {row["domain"] for row in data(cozyops(lab, a, "instance", "ls", "--json"))["instances"]}
    assert f"a2{t}.{lab.spec.zone}" not in listed and f"b1{t}.{lab.spec.zone}" in listed


def test_rm_removes_everything_of_the_instance_and_keeps_the_comments(stack_lab, fleets):
    lab, a, t = stack_lab, fleets["a"], fleets["t"]
    domain = f"a1{t}.{lab.spec.zone}"
    removed = cozyops(lab, a, "instance", "rm", domain, "--yes")
    assert removed.returncode == 0, removed.stderr[-3000:]
    assert "the instance" in removed.stderr and "DNS records" in removed.stderr
    assert (a / "instances.yml").read_text() == HEADER + "instances: []\n"
    assert on_host(lab, "h1", f"test -e /etc/nginx/sites-available/cozy-{domain}").returncode == 1
    assert data(cozyops(lab, a, "plan", "--json"))["changes"] == []


def test_adopt_makes_a_hand_made_instance_the_fleets(stack_lab, fleets):
    lab, a, t = stack_lab, fleets["a"], fleets["t"]
    domain = f"hand{t}.{lab.spec.zone}"
    made = on_host(lab, "h2", f"COZY_ADMIN_PASSPHRASE=$(cat /etc/cozy/.cozy-admin-passphrase) "
                              f"cozy-stack instances add {domain} --apps home")
    assert made.returncode == 0, made.stderr
    assert any(f["domain"] == domain for f in data(cozyops(lab, a, "plan", "--json"))["not_in_fleet"])
    adopted = cozyops(lab, a, "instance", "adopt", domain)
    assert adopted.returncode == 0, adopted.stderr
    plan = data(cozyops(lab, a, "plan", "--json"))
    assert not any(f["domain"] == domain for f in plan["not_in_fleet"])
    assert {c["kind"] for c in plan["changes"]} >= {"site"}  # its site, certificate and records come next
    assert cozyops(lab, a, "apply", "--yes").returncode == 0
    assert data(cozyops(lab, a, "instance", "show", domain, "--json"))["owned"] == "adopted"


def test_flat_mode_on_a_server_the_fleet_provisions_flat(stack_lab, tmp_path_factory):
    lab, t = stack_lab, secrets.token_hex(2)
    # a short directory: Ansible's SSH control sockets live under <fleet>/.cozyops/ (108 bytes at most)
    flat = make_fleet(lab, tmp_path_factory.mktemp("ff"), f"ff{t}", mode="flat", hosts=("h3",), zone=lab.spec.zone2)
    plan = data(cozyops(lab, flat, "plan", "--json"))
    assert [c["key"] for c in plan["changes"] if c["kind"] == "server"] == [["h3"]]  # cozy.yml: subdomains flat
    assert cozyops(lab, flat, "apply", "--yes").returncode == 0
    domain = f"f{t}.{lab.spec.zone2}"
    added = cozyops(lab, flat, "instance", "add", domain)
    assert added.returncode == 0, added.stderr[-3000:]
    assert "server h3" in added.stderr
    served = on_host(lab, "h3", f"echo | openssl s_client -connect 127.0.0.1:443 -servername f{t}-drive."
                                f"{lab.spec.zone2} 2>/dev/null | openssl x509 -noout -ext subjectAltName")
    assert f"*.{lab.spec.zone2}" in served.stdout, served.stdout + served.stderr
    quiet = data(cozyops(lab, flat, "plan", "--json"))
    assert quiet["changes"] == [] and quiet["servers"]["h3"]["provisioning"] == "unchanged"
    # The flat instance's records include *.zone2 (its apps' names); removing it removes them, and
    # leaves the session lab's zone as it found it for the files that run after (test_dns_providers
    # expects a name it deleted to have no address, which a wildcard left here would give it).
    removed = cozyops(lab, flat, "instance", "rm", domain, "--yes")
    assert removed.returncode == 0, removed.stderr[-3000:]
    assert answers(lab, lab.spec.knot_address, f"nothing{t}.{lab.spec.zone2}.", "A") == []


def test_no_onboarding_token_in_the_logs():
    tokens = [line.split("registerToken=")[1].split()[0] for out in SEEN for line in out.splitlines()
              if "registerToken=" in line]
    assert tokens
    logs = Path(os.environ["XDG_STATE_HOME"]) / "cozyops" / "logs" / "cozyops.log"
    text = logs.read_text() if logs.exists() else ""
    assert not any(token in text for token in tokens)
