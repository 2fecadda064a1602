"""The pure parts of the lab's hosts: apt sources, the root filesystem's recipe, SSH files, the proxy's rules."""

from __future__ import annotations

import subprocess

import pytest

from cozyops.errors import ConfigError, LabError
from cozyops.lab import aptproxy, aptsources, rootfs, sshkeys
from cozyops.lab.spec import LabSpec

INDEXTARGETS = (
    "http://deb.debian.org/debian/\tbookworm\tdeb\tmain\t/etc/apt/sources.list.d/debian.sources:1\n"
    "http://deb.debian.org/debian/\tbookworm-updates\tdeb\tmain\t/etc/apt/sources.list.d/debian.sources:1\n"
    "http://deb.debian.org/debian-security/\tbookworm-security\tdeb\tmain\t/etc/apt/sources.list.d/debian.sources:2\n"
    "https://deb.nodesource.com/node_20.x/\tnodistro\tdeb\tmain\t/etc/apt/sources.list.d/nodesource.sources:1\n"
    "http://mirror.example:8080/debian/\tbookworm\tdeb-src\tmain\t/etc/apt/sources.list:3\n"
)


def test_indextargets_are_read_as_apt_reports_them():
    targets = aptsources.parse_indextargets(INDEXTARGETS + "\n")
    assert len(targets) == 5
    assert targets[0] == aptsources.Target(
        "http://deb.debian.org/debian", "bookworm", "deb", "main", "/etc/apt/sources.list.d/debian.sources"
    )
    assert aptsources.mirror_for(targets, "bookworm") == "http://deb.debian.org/debian"
    assert aptsources.allowed(targets) == [
        ("deb.debian.org", 80),
        ("deb.nodesource.com", 443),
        ("mirror.example", 8080),
    ]


def test_no_mirror_for_the_suite_is_one_clear_error():
    targets = aptsources.parse_indextargets(INDEXTARGETS)
    with pytest.raises(LabError, match="no http\\(s\\) mirror of Debian trixie main"):
        aptsources.mirror_for(targets, "trixie")


@pytest.mark.parametrize(
    ("text", "keyrings"),
    [
        ("Types: deb\nURIs: http://x/\nSigned-By: /usr/share/keyrings/a.gpg\n", ["/usr/share/keyrings/a.gpg"]),
        ("deb [arch=amd64 signed-by=/etc/apt/keyrings/b.asc] https://x/ stable main\n", ["/etc/apt/keyrings/b.asc"]),
        ("deb http://deb.debian.org/debian bookworm main\n", []),
        ("Types: deb\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n", []),  # an inline key: no file
    ],
)
def test_keyrings_named_by_sources(text, keyrings):
    assert aptsources.signed_by(text) == keyrings


def test_the_root_filesystem_is_named_by_what_it_is_built_from():
    base = rootfs.Recipe("bookworm", "amd64", "http://deb.debian.org/debian")
    assert base.name.startswith("bookworm-amd64-")
    assert rootfs.Recipe("bookworm", "amd64", "http://deb.debian.org/debian").name == base.name
    assert rootfs.Recipe("bookworm", "amd64", "http://other.mirror/debian").name != base.name
    assert rootfs.Recipe("bookworm", "amd64", base.mirror, packages=("python3",)).name != base.name
    argv = base.debootstrap_argv(rootfs.cache_root() / "x")
    assert argv[:3] == ["debootstrap", "--variant=minbase", "--arch=amd64"]
    included = argv[3].removeprefix("--include=").split(",")
    assert {"python3", "openssh-server", "iproute2", "ca-certificates", "sudo"} <= set(included)
    assert argv[-3] == "bookworm" and argv[-1] == "http://deb.debian.org/debian"


def test_host_specs_follow_the_lab():
    spec = LabSpec("hx", zone="example.test")
    h1, h2 = spec.hosts(2)
    assert (h1.name, h1.fqdn, h1.netns) == ("h1", "h1.example.test", "cozyops-hx-h1")
    assert h1.address.endswith(".11") and h2.address.endswith(".12")
    assert spec.hosts(0) == []
    assert spec.apt_proxy == f"http://{spec.gateway}:3142/"
    with pytest.raises(ConfigError, match="--hosts 51"):
        spec.hosts(51)


def test_keys_known_hosts_and_ssh_config(tmp_path):
    key = tmp_path / "id_ed25519"
    public = sshkeys.ensure_key(key, "me@lab")
    assert public.startswith("ssh-ed25519 ") and key.stat().st_mode & 0o777 == 0o600
    assert sshkeys.ensure_key(key, "me@lab") == public  # an existing key is kept
    assert (tmp_path / "id_ed25519.pub").read_text() == f"{public} me@lab\n"
    # ssh-keygen agrees on the fingerprint and reads the private key.
    listed = subprocess.run(["ssh-keygen", "-l", "-f", str(key)], capture_output=True, text=True, check=True)
    assert sshkeys.fingerprint(public) in listed.stdout
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True, check=True)
    assert derived.stdout.strip() == public
    line = sshkeys.known_hosts([sshkeys.KnownHost(("h1", "h1.cozy.test", "10.1.2.11"), public)])
    assert line == f"h1,h1.cozy.test,10.1.2.11 {public}\n"
    config = sshkeys.ssh_config([("h1", "h1.cozy.test", "10.1.2.11")], key, tmp_path / "known_hosts")
    parsed = subprocess.run(["ssh", "-G", "-F", "/dev/stdin", "h1"], input=config, capture_output=True, text=True)
    settings = dict(line.split(" ", 1) for line in parsed.stdout.splitlines() if " " in line)
    assert settings["hostname"] == "10.1.2.11" and settings["user"] == "root"
    assert settings["stricthostkeychecking"] == "true"
    assert settings["userknownhostsfile"] == str(tmp_path / "known_hosts")
    assert settings["passwordauthentication"] == "no" and settings["batchmode"] == "yes"


ALLOWED = {("deb.debian.org", 80)}


@pytest.mark.parametrize(
    ("line", "status"),
    [
        ("POST http://deb.debian.org/debian/ HTTP/1.1", 405),
        ("GET http://example.org/ HTTP/1.1", 403),
        ("GET http://deb.debian.org:8080/debian/ HTTP/1.1", 403),
        ("GET /debian/ HTTP/1.1", 400),  # origin form: not a proxy request
        ("GET ftp://deb.debian.org/debian/ HTTP/1.1", 400),
    ],
)
def test_the_proxy_refuses_what_is_not_a_mirror_read(line, status):
    method, target, version, headers = aptproxy.parse_head(f"{line}\r\nHost: x".encode())
    with pytest.raises(aptproxy.Refused) as refused:
        aptproxy.origin_request(method, target, version, headers, ALLOWED)
    assert refused.value.status == status


def test_the_proxy_rewrites_a_mirror_request_for_the_origin():
    head = (
        b"GET http://deb.debian.org/debian/dists/bookworm/InRelease?x=1 HTTP/1.1\r\n"
        b"Host: deb.debian.org\r\nProxy-Connection: keep-alive\r\nUser-Agent: Debian APT-HTTP/1.3"
    )
    where, request = aptproxy.origin_request(*aptproxy.parse_head(head), ALLOWED)
    assert where == ("deb.debian.org", 80)
    assert request == (
        b"GET /debian/dists/bookworm/InRelease?x=1 HTTP/1.1\r\n"
        b"Host: deb.debian.org\r\nUser-Agent: Debian APT-HTTP/1.3\r\n\r\n"
    )


def test_a_request_with_a_body_is_refused():
    head = b"GET http://deb.debian.org/ HTTP/1.1\r\nContent-Length: 3"
    with pytest.raises(aptproxy.Refused, match="body"):
        aptproxy.origin_request(*aptproxy.parse_head(head), ALLOWED)


def test_a_lab_directory_too_deep_for_knots_control_socket_is_refused(tmp_path):
    from cozyops.lab.lab import UNIX_PATH_MAX, Lab

    shallow = Lab.open("zs1", tmp_path / "lab")
    shallow._check_socket_paths()  # fine
    deep = tmp_path / ("d" * max(1, UNIX_PATH_MAX - len(str(tmp_path.resolve())) - 20)) / "lab"
    with pytest.raises(LabError) as caught:
        Lab.open("zs2", deep)._check_socket_paths()
    assert str(caught.value).startswith(f"lab directory {deep}: is too deep: Knot's control socket there")
    assert "\n" not in str(caught.value) and "--dir" in str(caught.value)
