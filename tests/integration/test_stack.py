"""The cozy-stack double on lab hosts, reached as a real server is: over SSH, through forwarded ports.

`lab up --with-stack` installs it on both hosts; the clients (cozyops.stack) talk to it from the
controller through the SSH transport's port forwarding; the CLI runs on the host over `ssh -F`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import urllib.parse

import pytest
import requests

from cozyops.lab import netns, stack
from cozyops.stack import ROOT_ID, AdminClient, PublicClient, StackError
from cozyops.transport import SshTransport

# Provisioning fresh hosts (apt, packages, services) takes minutes on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(1500)
SEEN_OUTPUT: list[str] = []  # everything the tests saw printed, scanned for secrets at the end
TOKENS: list[str] = []  # the tokens the tests minted, which must not appear in the logs either


def mint(admin: AdminClient, domain: str) -> str:
    token = admin.token(domain)
    TOKENS.append(token)
    return token


def up_with_stack(lab) -> dict:
    """`cozyops lab up --with-stack --json`: the lab's status, every host ok."""
    result = subprocess.run(
        [sys.executable, "-m", "cozyops", "lab", "up", "--dir", str(lab.dir), "--with-stack", "--json"],
        capture_output=True, text=True, timeout=900,
    )
    SEEN_OUTPUT.extend([result.stdout, result.stderr])
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["stack"] and all(host["ok"] for host in status["hosts"]), status["hosts"]
    return status


@pytest.fixture(scope="module")
def stack_lab(lab):
    up_with_stack(lab)
    return lab


def on_host(lab, host: str, command: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "cozyops", "lab", "exec", "--dir", str(lab.dir), "--",
         "ssh", "-F", str(lab.host_files.ssh_config), host, command],
        capture_output=True, text=True, timeout=120,
    )
    SEEN_OUTPUT.extend([result.stdout, result.stderr])
    return result


AS_ADMIN = "COZY_ADMIN_PASSPHRASE=$(cat /etc/cozy/.cozy-admin-passphrase) "


def with_clients(lab, host: str, domain: str, work):
    """Run ``work(admin, public)`` inside the lab, the clients on ports forwarded over SSH."""

    def inside():
        with SshTransport(lab.ssh_target(host)) as ssh:
            passphrase = stack.admin_passphrase(ssh)
            with ssh.forward(stack.ADMIN_PORT) as admin_port, ssh.forward(stack.PUBLIC_PORT) as public_port:
                admin = AdminClient(admin_port.url, passphrase)
                public = PublicClient(public_port.url, domain)
                try:
                    return work(admin, public)
                finally:
                    admin.close()
                    public.close()

    return netns.inside(lab.spec.netns, inside)


def test_the_debian_layout_on_the_host(stack_lab):
    listing = on_host(stack_lab, "h1", "stat -c '%n %a %U:%G' /usr/bin/cozy-stack /etc/cozy/cozy.yml "
                                       "/etc/cozy/cozy-admin-passphrase /etc/cozy/.cozy-admin-passphrase /var/lib/cozy")
    assert listing.returncode == 0, listing.stderr
    modes = {line.split()[0]: line.split()[1:] for line in listing.stdout.splitlines()}
    assert modes["/etc/cozy/.cozy-admin-passphrase"] == ["600", "root:root"]
    # The package's postinst: `chown cozy-stack: /etc/cozy/cozy-admin-passphrase`, as cozy-stack's own.
    assert modes["/etc/cozy/cozy-admin-passphrase"] == ["440", "cozy-stack:cozy"]
    assert modes["/var/lib/cozy"][1] == "cozy-stack:cozy"
    hashed = on_host(stack_lab, "h1", "cat /etc/cozy/cozy-admin-passphrase").stdout.strip()
    assert re.fullmatch(r"scrypt\$32768\$8\$1\$[0-9a-f]{32}\$[0-9a-f]{64}", hashed)  # cozy-stack.md §1.12
    services = on_host(stack_lab, "h1", "service cozy-stack status; service couchdb status")
    assert services.returncode == 0, services.stdout + services.stderr
    assert "is running" in services.stdout
    assert on_host(stack_lab, "h1", "ps -o user= -C python3 | sort -u").stdout.split().count("cozy-stack") == 1


def test_cli_on_the_host_add_ls_token_and_files_with_curl(stack_lab):
    domain = f"cli{secrets.token_hex(3)}.{stack_lab.spec.zone}"
    added = on_host(stack_lab, "h1", AS_ADMIN + f"cozy-stack instances add --apps drive,photos {domain}")
    assert added.returncode == 0, added.stderr
    lines = added.stdout.splitlines()
    assert f'Creating instance for domain "{domain}": please wait...' in lines
    assert f"Instance created with success for domain {domain}" in lines
    token_line = next(line for line in lines if line.startswith("Registration token: "))
    hex_token = re.fullmatch(r'Registration token: "([0-9a-f]{32})"', token_line).group(1)
    assert f"Define your password by visiting https://{domain}/?registerToken={hex_token}" in lines
    again = on_host(stack_lab, "h1", AS_ADMIN + f"cozy-stack instances add {domain}")
    assert again.returncode == 1
    assert "Error: Conflict: Instance already exists" in again.stderr

    listed = on_host(stack_lab, "h1", AS_ADMIN + "cozy-stack instances ls")
    assert domain in [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]

    script = (
        "export COZY_ADMIN_PASSPHRASE=$(cat /etc/cozy/.cozy-admin-passphrase) && "
        f"T=$(cozy-stack instances token-cli {domain} io.cozy.files) && "
        f"curl -s -o /dev/null -w '%{{http_code}}\\n' -X POST -H 'Host: {domain}' -H \"Authorization: Bearer $T\" "
        f"'http://127.0.0.1:8080/files/?Type=directory&Name=Notes' && "
        f"curl -s -H 'Host: {domain}' -H \"Authorization: Bearer $T\" "
        f"'http://127.0.0.1:8080/files/metadata?Path=/Notes' && echo && "
        f"curl -s -o /dev/null -w '%{{http_code}}\\n' -H 'Host: {domain}' 'http://127.0.0.1:8080/files/metadata?Path=/Notes'"
    )
    result = on_host(stack_lab, "h1", script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    created, document, anonymous = lines[0], "\n".join(lines[1:-1]), lines[-1]
    assert created == "201"
    data = json.loads(document)["data"]
    assert data["type"] == "io.cozy.files" and data["attributes"]["path"] == "/Notes"
    assert anonymous == "401"  # files-data §0: no token → 401


def test_admin_client_create_list_show_modify_destroy(stack_lab):
    domain = f"adm{secrets.token_hex(3)}.{stack_lab.spec.zone}"

    def work(admin: AdminClient, public: PublicClient):
        created = admin.create_instance(domain, locale="fr", email=f"me@{domain}", passphrase="not-a-secret-here")
        assert created.domain == domain and created.onboarded and created.locale == "fr"
        assert created.prefix == "cozy" + hashlib.sha256(domain.encode()).hexdigest()[:32]
        assert domain in [instance.domain for instance in admin.instances()]
        assert admin.instance(domain).id == created.id
        modified = admin.modify(domain, Email=f"other@{domain}")
        assert modified.attributes.get("email", f"other@{domain}") == f"other@{domain}"
        assert admin.block(domain, "PAYMENT_FAILED").blocked
        assert not admin.unblock(domain).blocked
        assert admin.set_disk_quota(domain, 5_000_000_000).disk_quota == 5_000_000_000
        with pytest.raises(StackError) as exists:
            admin.create_instance(domain)
        assert (exists.value.status, exists.value.title, exists.value.detail) == (
            409, "Conflict", "Instance already exists")
        admin.destroy(domain)
        with pytest.raises(StackError) as gone:
            admin.instance(domain)
        assert gone.value.status == 404
        with pytest.raises(StackError) as bad:
            AdminClient(admin.http.base_url, "wrong passphrase").instances()
        assert bad.value.status == 403

    with_clients(stack_lab, "h1", domain, work)


def test_upload_a_tree_with_checksums_and_read_it_back(stack_lab):
    domain = f"tree{secrets.token_hex(3)}.{stack_lab.spec.zone}"
    tree = {f"/Docs/part{index}/file{index}-{n}.bin": os.urandom(1000 * index + n) for index in range(1, 4)
            for n in range(4)}

    def work(admin: AdminClient, public: PublicClient):
        admin.create_instance(domain, passphrase="x")
        public.set_token(mint(admin, domain))
        uploaded = {}
        for path, data in tree.items():
            folder, name = path.rsplit("/", 1)
            parent = public.mkdir_p(folder)
            uploaded[path] = public.upload(parent.id, name, data, content_type="application/octet-stream")
        for path, data in tree.items():
            found = public.stat(path)
            assert found.id == uploaded[path].id and found.size == len(data)
            assert public.download(found.id) == data
        listing = sorted(doc.name for doc in public.children(public.stat("/Docs/part1").id, page_size=2))
        assert listing == sorted(path.rsplit("/", 1)[1] for path in tree if path.startswith("/Docs/part1/"))
        root_names = [doc.name for doc in public.children(ROOT_ID)]
        assert "Docs" in root_names
        # A corrupted transfer is refused; a taken name too, without renaming.
        folder = public.stat("/Docs").id
        with pytest.raises(StackError) as corrupted:
            public.http.request("POST", f"/files/{folder}", "upload", (201,), params={"Type": "file", "Name": "x"},
                                data=b"abc", headers={"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="})
        assert corrupted.value.status == 412
        with pytest.raises(StackError) as taken:
            public.mkdir(folder, "part1")
        assert taken.value.status == 409
        admin.destroy(domain)

    with_clients(stack_lab, "h1", domain, work)


def test_data_and_references(stack_lab):
    domain = f"data{secrets.token_hex(3)}.{stack_lab.spec.zone}"

    def work(admin: AdminClient, public: PublicClient):
        admin.create_instance(domain, passphrase="x")
        public.set_token(mint(admin, domain))
        created = public.create_doc("io.cozy.contacts", {"fullname": "Jane Doe", "email": [{"address": "j@d.test"}]})
        assert created["ok"] and created["type"] == "io.cozy.contacts"
        doc = public.get_doc("io.cozy.contacts", created["id"])
        assert doc["fullname"] == "Jane Doe"
        doc["fullname"] = "Jane Q. Doe"
        updated = public.update_doc("io.cozy.contacts", doc)
        assert updated["rev"].startswith("2-")
        assert any(row["id"] == created["id"] for row in public.all_docs("io.cozy.contacts"))
        contacts = {d["_id"]: d for d in public.normal_docs("io.cozy.contacts")}
        assert created["id"] in contacts
        # Creating the instance created the "myself" contact (cozy-stack.md §1.2).
        assert [d for d in contacts.values() if d.get("me")], contacts
        assert [d["_id"] for d in public.find("io.cozy.contacts", {"fullname": "Jane Q. Doe"})] == [created["id"]]
        album = public.create_doc("io.cozy.photos.albums", {"name": "Holidays"})
        photos = public.mkdir_p("/Photos")
        photo = public.upload(photos.id, "beach.jpg", b"\xff\xd8\xff not really a jpeg", content_type="image/jpeg")
        refs = public.add_referenced_by(photo.id, [{"type": "io.cozy.photos.albums", "id": album["id"]}])
        assert refs == [{"id": album["id"], "type": "io.cozy.photos.albums"}]
        assert public.get(photo.id).referenced_by == refs
        deleted = public.delete_doc("io.cozy.contacts", created["id"], updated["rev"])
        assert deleted["deleted"] is True
        with pytest.raises(StackError) as missing:
            public.get_doc("io.cozy.contacts", created["id"])
        assert missing.value.status == 404
        admin.destroy(domain)

    with_clients(stack_lab, "h1", domain, work)


@pytest.mark.parametrize(("host", "mode"), [("h1", "nested"), ("h2", "flat")])
def test_an_app_subdomain_answers_in_each_mode(stack_lab, host, mode):
    if mode == "flat":  # the lab's fleet is nested; h2 is switched to flat mode for this test
        switched = on_host(stack_lab, host, "sed -i 's/^subdomains: nested$/subdomains: flat/' /etc/cozy/cozy.yml "
                           "&& grep -qx 'subdomains: flat' /etc/cozy/cozy.yml && service cozy-stack restart >/dev/null "
                           "&& for i in $(seq 100); do cozy-stack status >/dev/null 2>&1 && exit 0; sleep 0.2; done; "
                           "exit 1")
        assert switched.returncode == 0, switched.stderr
    name = f"app{secrets.token_hex(3)}"
    domain = f"{name}.{stack_lab.spec.zone}"
    app_host = f"drive.{domain}" if mode == "nested" else f"{name}-drive.{stack_lab.spec.zone}"
    unknown_host = f"drive.nobody.{stack_lab.spec.zone}" if mode == "nested" else f"nobody-drive.{stack_lab.spec.zone}"

    def work(admin: AdminClient, public: PublicClient):
        admin.create_instance(domain, apps=["drive"], passphrase="x")
        base = public.http.base_url
        answer = requests.get(base + "/", headers={"Host": app_host}, timeout=10, allow_redirects=False)
        unknown = requests.get(base + "/", headers={"Host": unknown_host}, timeout=10, allow_redirects=False)
        version = requests.get(base + "/version", headers={"Host": domain}, timeout=10)
        if mode == "flat":
            with pytest.raises(StackError) as illegal:
                admin.create_instance(f"with-dash.{stack_lab.spec.zone}")
            assert illegal.value.status == 422  # cozy-stack.md §1.2: no '-' in the first label in flat mode
        admin.destroy(domain)
        return answer, unknown, version

    answer, unknown, version = with_clients(stack_lab, host, domain, work)
    # Without a session, an app page sends to the login of *its* instance, back to *its* app.
    assert answer.status_code == 302, answer.text[:200]
    location = answer.headers["Location"]
    assert location.startswith(f"https://{domain}/auth/login?redirect=")
    assert urllib.parse.unquote(location.split("redirect=", 1)[1]).startswith(f"https://{app_host}/")
    assert unknown.status_code == 404
    assert version.status_code == 200 and "version" in version.json()


def test_a_host_added_later_gets_the_stack(stack_lab):
    result = subprocess.run(
        [sys.executable, "-m", "cozyops", "lab", "up", "--dir", str(stack_lab.dir), "--hosts", "3", "--json"],
        capture_output=True, text=True, timeout=600,
    )
    SEEN_OUTPUT.extend([result.stdout, result.stderr])
    assert result.returncode == 0, result.stderr
    hosts = {host["name"]: host for host in json.loads(result.stdout)["hosts"]}
    assert set(hosts) == {"h1", "h2", "h3"} and all(host["ok"] for host in hosts.values()), hosts
    answer = on_host(stack_lab, "h3", "cozy-stack status")
    assert answer.returncode == 0 and "OK" in answer.stdout, answer.stdout + answer.stderr


def test_up_with_stack_again_leaves_the_hosts_that_have_it_alone(stack_lab):
    """The stack is on h1..h3 (the tests above): `up --with-stack` runs no playbook, and checks them."""
    runs = stack_lab.fleet_dir / ".cozyops" / "runs"
    before = sorted(path.name for path in runs.iterdir())
    assert before, "the stack was brought up by `cozyops server provision`, which keeps its runs here"
    status = up_with_stack(stack_lab)
    assert [host["name"] for host in status["hosts"]] == ["h1", "h2", "h3"]
    assert sorted(path.name for path in runs.iterdir()) == before
    assert sorted(json.loads(stack_lab.state_path.read_text())["stacked"]) == ["h1", "h2", "h3"]


def test_no_secret_appears_in_any_output_or_log(stack_lab):
    """Runs last in this module: the passphrases and tokens of the run appear nowhere."""

    def collect():
        found = {}
        for host in ("h1", "h2", "h3"):
            with SshTransport(stack_lab.ssh_target(host)) as ssh:
                found[host] = (stack.admin_passphrase(ssh),
                               ssh.run("cat /var/log/cozy/stack.log /var/log/couchdb/couchdb.log 2>/dev/null").text)
        return found

    found = netns.inside(stack_lab.spec.netns, collect)
    secrets_of_run = [passphrase for passphrase, _ in found.values()] + TOKENS
    assert len(TOKENS) >= 2 and all(len(secret) >= 16 for secret in secrets_of_run)
    texts = list(SEEN_OUTPUT) + [log for _, log in found.values()]
    for path in sorted(stack_lab.logs.rglob("*")) + sorted((stack_lab.dir / "fleet").rglob("*")):
        if path.is_file():
            texts.append(path.read_text(errors="replace"))
    texts.append(stack_lab.state_path.read_text())
    for secret in secrets_of_run:
        assert not any(secret in text for text in texts), "a passphrase or token leaked into an output or log"
