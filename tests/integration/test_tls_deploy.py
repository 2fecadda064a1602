"""Deploying certificates to a real nginx on a lab host, over SSH: copy, nginx -t, reload, and a TLS
handshake with SNI showing the new certificate; a certificate nginx refuses leaves the old files."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cozyops import inventory
from cozyops.tls import deploy
from cozyops.tls.issuer import key_pem
from cozyops.tls.manager import CertManager
from cozyops.transport.ssh import SshTransport
from tests.integration.test_tls import inside, tag, write_fleet

pytestmark = pytest.mark.lab

HOST = "h2"  # h1's nginx is stopped by the hosts' tests


def self_signed(name: str) -> tuple[bytes, bytes]:
    """A placeholder certificate, as a server has (snakeoil) before the real one."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)


SITE = """server {{
    listen 443 ssl;
    server_name .{name};
    ssl_certificate {dir}/{name}/fullchain.pem;
    ssl_certificate_key {dir}/{name}/privkey.pem;
    return 200 "ok\\n";
}}
"""


def test_deploy_to_nginx_reload_and_handshake_shows_the_new_certificate(lab, tmp_path):
    t = tag()
    domain = f"d{t}.{lab.spec.zone}"
    fleet = inventory.load(write_fleet(tmp_path / "fleet", lab, [domain]))
    manager = CertManager(fleet)
    store = manager.store

    def scenario():
        result = manager.execute(manager.plan().todo)
        assert list(result.issued) == [domain]
        with SshTransport(lab.ssh_target(HOST)) as ssh:
            ssh.run("DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx",
                    timeout=600).check(HOST)
            placeholder, placeholder_key = self_signed(domain)
            ssh.run(f"mkdir -p {deploy.REMOTE_DIR}/{domain}").check(HOST)
            ssh.put(placeholder, f"{deploy.REMOTE_DIR}/{domain}/fullchain.pem")
            ssh.put(placeholder_key, f"{deploy.REMOTE_DIR}/{domain}/privkey.pem", 0o600)
            ssh.put(SITE.format(name=domain, dir=deploy.REMOTE_DIR).encode(), f"/etc/nginx/sites-enabled/{domain}")
            ssh.run("service nginx status >/dev/null && service nginx reload || service nginx start").check(HOST)

            first = deploy.deploy(ssh, domain, store.fullchain(domain).read_bytes(), store.privkey(domain).read_bytes(),
                                  f"drive.{domain}")
            assert first.verified and first.serial == store.records()[domain].serial
            assert ssh.run(f"stat -c %a {first.privkey}").check(HOST).text.strip() == "600"

            # renewed: the new certificate is served after the deploy
            store.expire_now(domain)
            renewed = manager.execute(manager.plan(renew_only=True).todo)
            assert list(renewed.issued) == [domain]
            second = deploy.deploy(ssh, domain, store.fullchain(domain).read_bytes(),
                                   store.privkey(domain).read_bytes(), f"photos.{domain}")
            assert second.verified and second.serial != first.serial

            # a key that does not match: nginx -t refuses it, the served and stored files stay
            _, wrong_key = self_signed(domain)
            with pytest.raises(deploy.DeployError) as refused:
                deploy.deploy(ssh, domain, store.fullchain(domain).read_bytes(), wrong_key, f"drive.{domain}")
            assert "nginx -t refuses it" in str(refused.value) and domain in str(refused.value)
            assert "PRIVATE KEY" not in str(refused.value)
            assert ssh.get(second.privkey) == store.privkey(domain).read_bytes()
            with ssh.forward(443) as forward:
                served = deploy.served_certificate(forward.local_host, forward.local_port, f"drive.{domain}")
            assert f"{served.serial_number:x}" == second.serial
            ssh.run(f"rm -f /etc/nginx/sites-enabled/{domain} && service nginx reload").check(HOST)

    inside(lab, scenario)
    manager.close()


def test_cert_issue_deploy_and_cert_deploy_through_the_fleet(lab, tmp_path):
    """The commands: `cert issue --deploy` puts each certificate on its instance's server (reached
    with the SSH settings the lab's fleet keeps only in group_vars/, as Ansible would) with one
    reload; `cert deploy` again changes nothing; an unknown server is one clear error."""
    import json
    import shutil
    import subprocess
    import sys

    t = tag()
    domains = [f"a{t}.{lab.spec.zone}", f"b{t}.{lab.spec.zone}"]
    root = write_fleet(tmp_path / "fleet", lab, domains)
    shutil.copy(lab.fleet_dir / "hosts.yml", root / "hosts.yml")  # the hosts, no SSH settings (issue 12 item 7):
    shutil.copy(lab.fleet_dir / "group_vars/cozy_servers.yml", root / "group_vars/cozy_servers.yml")  # those here
    assert "ansible_ssh" not in (root / "hosts.yml").read_text()
    (root / "instances.yml").write_text(json.dumps({"instances": [{"domain": d, "server": HOST} for d in domains]}))

    def cozyops(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cozyops", *argv, "--fleet", str(root)],
                              capture_output=True, text=True, timeout=300)

    def scenario():
        with SshTransport(lab.ssh_target(HOST)) as ssh:
            ssh.run("DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx",
                    timeout=600).check(HOST)
            ssh.run("service nginx status >/dev/null || service nginx start").check(HOST)
            for domain in domains:  # the sites exist before their certificates, as provisioning leaves them
                ssh.put(SITE.format(name=domain, dir=deploy.REMOTE_DIR).encode(), f"/etc/nginx/sites-enabled/{domain}")
            try:
                issued = cozyops("cert", "issue", "--deploy", "--json")
                assert issued.returncode == 0, issued.stderr
                report = json.loads(issued.stdout)
                assert sorted(report["issued"]) == domains and report["deploy_failed"] == {}
                records = CertManager(inventory.load(root)).store.records()
                assert sorted((row["name"], row["server"], row["changed"]) for row in report["deployed"]) == \
                    [(d, HOST, True) for d in domains]
                with ssh.forward(443) as forward:
                    for domain in domains:
                        served = deploy.served_certificate(forward.local_host, forward.local_port, f"drive.{domain}")
                        assert f"{served.serial_number:x}" == records[domain].serial

                again = cozyops("cert", "deploy", "--json")
                assert again.returncode == 0, again.stderr
                rows = json.loads(again.stdout)["deployed"]
                assert sorted((row["name"], row["changed"]) for row in rows) == [(d, False) for d in domains]

                # a key that does not match its certificate: refused by nginx -t, the server keeps its files
                store = CertManager(inventory.load(root)).store
                good_key = store.privkey(domains[1]).read_bytes()
                store.privkey(domains[1]).write_bytes(self_signed(domains[1])[1])
                try:
                    refused = cozyops("cert", "deploy")
                finally:
                    store.privkey(domains[1]).write_bytes(good_key)
                assert refused.returncode == 1
                bad = f"{domains[1]} on {HOST}: certificate {domains[1]} on {HOST}: nginx -t refuses it"
                assert bad in refused.stderr
                assert f"{domains[0]} on {HOST}: serial {records[domains[0]].serial}, unchanged" in refused.stderr
                assert ssh.get(f"{deploy.REMOTE_DIR}/{domains[1]}/privkey.pem") == good_key

                unknown = cozyops("cert", "deploy", "--server", "h9")
                assert unknown.returncode == 1 and unknown.stdout == ""
                assert unknown.stderr.strip().splitlines() == \
                    [f"cozyops: error: server h9: is not a server of fleet t-{root.name}"]
            finally:
                ssh.run("rm -f " + " ".join(f"/etc/nginx/sites-enabled/{d}" for d in domains)
                        + " && service nginx reload").check(HOST)

    inside(lab, scenario)
