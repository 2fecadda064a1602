"""HTTP-01 for fleets without a DNS API, against the lab's pebble over HTTP to a provisioned host.

On a lab of its own (one fresh host, provisioned: nginx serves /.well-known/acme-challenge/ from
cozy_acme_webroot on port 80): with ``cozy_acme.challenge: http-01``, `cert issue --deploy` issues
one certificate per instance naming the instance and its app hosts (no wildcard), written into the
webroot over SSH and removed after; HTTPS on each app host is verified against pebble's root; an
app added to the instance makes `cert renew` issue it again with the new name. Both modes.
"""

from __future__ import annotations

import json
import secrets
import sys

import pytest
import yaml
from cryptography import x509

from tests.conftest import own_lab
from tests.integration.test_provision import inside, on_host, provision

pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def http_lab(tmp_path_factory):
    with own_lab(tmp_path_factory, "w", hosts_wanted=1) as lab:
        yield lab


def set_fleet(lab, mode: str, instances: list[dict]) -> None:
    path = lab.fleet_dir / "group_vars" / "all.yml"
    data = yaml.safe_load(path.read_text())
    data["cozy_subdomains"] = mode
    data["cozy_acme"]["challenge"] = "http-01"
    path.write_text(yaml.safe_dump(data))
    (lab.fleet_dir / "instances.yml").write_text(json.dumps({"instances": instances}))


def cozyops(lab, *argv: str):
    result = inside(lab, [sys.executable, "-m", "cozyops", *argv, "--fleet", str(lab.fleet_dir)])
    assert result.returncode == 0, (argv, result.stderr[-3000:])
    return json.loads(result.stdout) if "--json" in argv else result


def names_of(lab, name: str) -> list[str]:
    pem = (lab.fleet_dir / ".cozyops" / "certs" / name / "fullchain.pem").read_bytes()
    leaf = x509.load_pem_x509_certificate(pem)
    return sorted(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName))


def https(lab, host: str) -> str:
    """The HTTP status of https://host/ on h1, the certificate verified against pebble's root only
    (curl fails otherwise). The instance is not created on cozy-stack here: its answer is the stack's
    own (404 for an unknown instance), through nginx."""
    address = lab.spec.host(1).address
    result = inside(lab, ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert",
                          str(lab.pebble().issuing_root), "--resolve", f"{host}:443:{address}", f"https://{host}/"],
                    timeout=60)
    assert result.returncode == 0, (host, result.stderr)
    assert result.stdout.isdigit() and result.stdout != "000", result.stdout
    return result.stdout


@pytest.mark.parametrize("mode", ["nested", "flat"])
def test_http01_issue_deploy_https_and_renew_after_an_app_is_added(http_lab, mode):
    lab = http_lab
    zone = lab.spec.zone
    first = f"{mode[0]}{secrets.token_hex(3)}"
    domain = f"{first}.{zone}"

    def host(app: str) -> str:
        return f"{app}.{domain}" if mode == "nested" else f"{first}-{app}.{zone}"

    set_fleet(lab, mode, [{"domain": domain, "server": "h1", "apps": ["drive"]}])
    provisioned, summary = provision(lab, "h1")  # nginx and the instance's site
    assert provisioned.returncode == 0, provisioned.stderr[-3000:]
    cozyops(lab, "dns", "apply", "--yes", "--json")  # the instance's names point at h1: pebble resolves them there

    issued = cozyops(lab, "cert", "issue", "--deploy", "--json")
    assert issued["issued"] == [domain] and issued["deploy_failed"] == {}, issued
    assert names_of(lab, domain) == sorted([domain, host("drive")])  # no wildcard
    assert https(lab, domain) == https(lab, host("drive")) == "404"  # verified; the stack knows no such instance
    left = on_host(lab, "h1", "ls -A /var/www/html/.well-known/acme-challenge/ | wc -l")
    assert left.stdout.strip() == "0", left.stdout  # every challenge file removed after validation

    # an app added: the certificate's names no longer match; cert renew issues it again
    set_fleet(lab, mode, [{"domain": domain, "server": "h1", "apps": ["drive", "photos"]}])
    cozyops(lab, "dns", "apply", "--yes", "--json")
    listed = {row["name"]: row for row in cozyops(lab, "cert", "ls", "--json")}
    assert listed[domain]["status"] == "names changed", listed
    renewed = cozyops(lab, "cert", "renew", "--deploy", "--json")
    assert renewed["renewed"] == [domain] and renewed["deploy_failed"] == {}, renewed
    assert names_of(lab, domain) == sorted([domain, host("drive"), host("photos")])
    assert https(lab, host("photos")) == "404"
