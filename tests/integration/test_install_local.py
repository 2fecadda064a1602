"""`cozyops install --local` on the server itself, as docs/install.md tells a self-hoster whose
server reaches Debian's mirrors but not PyPI: a wheelhouse built on the controller (`pip wheel
-c requirements.lock .`), copied to a fresh lab host, cozyops installed there into a venv from it
alone (`pip install --no-index --find-links`), then run on the host with Ansible's local
connection, into a copy of the lab's fleet (its DNS servers, its CA, its apt repository) with no
server in it yet. At the end https://drive.DOMAIN/ answers through the host's nginx with a
certificate that chains to pebble's root, the onboarding link was printed, the renewal is a cron
entry on the host (no systemd there), and a second run has nothing to do.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import own_lab
from tests.integration.test_install import verified

pytestmark = pytest.mark.timeout(2400)
REPO = Path(__file__).resolve().parents[2]
ON_HOST = "/root/fleet"


@pytest.fixture(scope="module")
def local_lab(tmp_path_factory):
    with own_lab(tmp_path_factory, "l", hosts_wanted=1) as lab:
        yield lab


def on_h1(lab, command: str, *, stdin: bytes | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "cozyops", "lab", "exec", "--dir", str(lab.dir), "--",
            "ssh", "-F", str(lab.host_files.ssh_config), "h1", command]
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)


def copy_to_h1(lab, source: Path, target: str) -> None:
    """``source`` (a directory) to ``target`` on h1, as tar over SSH."""
    packed = subprocess.run(["tar", "-C", str(source), "-c", "."], capture_output=True, check=True).stdout
    result = on_h1(lab, f"mkdir -p {target} && tar -C {target} -x", stdin=packed, timeout=600)
    assert result.returncode == 0, result.stderr.decode()[-2000:]


def test_install_local_on_the_server_from_a_wheelhouse(local_lab, tmp_path):
    lab = local_lab
    wheelhouse = tmp_path / "wheelhouse"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheelhouse),
                            "-c", str(REPO / "requirements.lock"), str(REPO)],
                           capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    assert any(wheel.name.startswith("cozyops-") for wheel in wheelhouse.iterdir())
    # The fleet: the lab's settings (DNS, CA, apt repository), no server and no instance yet; its
    # one absolute path (the lab repository's keyring) pointed at the copy on the host.
    fleet = tmp_path / "fleet"
    shutil.copytree(lab.fleet_dir, fleet, ignore=shutil.ignore_patterns(".cozyops", "instances.yml"))
    (fleet / "group_vars" / "cozy_servers.yml").unlink(missing_ok=True)  # the controller's SSH settings
    (fleet / "hosts.yml").write_text("all:\n  children:\n    cozy_servers:\n      hosts: {}\n")
    settings = yaml.safe_load((fleet / "group_vars" / "all.yml").read_text())
    settings["cozy_fleet_name"] = "local"
    settings = yaml.safe_load(yaml.safe_dump(settings).replace(str(lab.fleet_dir), ON_HOST))
    (fleet / "group_vars" / "all.yml").write_text(yaml.safe_dump(settings))
    copy_to_h1(lab, wheelhouse, "/root/wheelhouse")
    copy_to_h1(lab, fleet, ON_HOST)

    venv = on_h1(lab, "apt-get install -y -q --no-install-recommends python3-venv >/dev/null && "
                      "python3 -m venv /opt/cozyops && "
                      "/opt/cozyops/bin/pip install -q --no-index --find-links /root/wheelhouse cozyops")
    assert venv.returncode == 0, venv.stderr.decode()[-3000:]

    domain = f"carol.{lab.spec.zone}"
    install = (f"cd /root && /opt/cozyops/bin/cozyops install {domain} --email carol@{lab.spec.zone} --local "
               f"--fleet {ON_HOST}")
    done = on_h1(lab, install)
    err = done.stderr.decode()
    assert done.returncode == 0, err[-4000:]
    assert f"https://{domain}/?registerToken=" in done.stdout.decode(), done.stdout.decode()[-2000:]
    status, server = verified(lab, domain)
    assert server.startswith("nginx") and status < 500, (status, server)
    hosts = yaml.safe_load(on_h1(lab, f"cat {ON_HOST}/hosts.yml").stdout)
    (name, host_vars), = hosts["all"]["children"]["cozy_servers"]["hosts"].items()
    assert host_vars["ansible_connection"] == "local" and host_vars["cozy_public_ipv4"] == lab.spec.host(1).address
    cron = on_h1(lab, "cat /etc/cron.d/cozyops-renew-local")
    assert cron.returncode == 0 and f"cert renew --deploy --fleet {ON_HOST}" in cron.stdout.decode(), cron

    again = on_h1(lab, install)
    assert again.returncode == 0, again.stderr.decode()[-3000:]
    assert "nothing to do" in again.stderr.decode(), again.stderr.decode()[-3000:]
