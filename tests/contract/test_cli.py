"""The ``cozy-stack`` command line (cozy-stack.md §1), run as a real process against the running double."""

from __future__ import annotations

import ast
import base64
import json
import re
import stat
import sys

import pytest

from .conftest import LAB_DIR, Double, unique
from .table import Table

T = Table()
S = "cozy-stack.md"


def add(d: Double, *args: str) -> str:
    domain = unique() + ".cozy.test"
    done = d.cli("instances", "add", domain, *args)
    assert done.returncode == 0, done.stderr
    return domain


@T.row(f"{S} §1.12", "version prints the version alone")
def _(d: Double):
    done = d.cli("version", passphrase=False)
    assert done.returncode == 0 and re.fullmatch(r"\d+\.\d+\.\d+\S*\n", done.stdout)


@T.row(f"{S} §1.12", "status: `OK, the HTTP server is ready.`; nothing listening: exit 1")
def _(d: Double):
    done = d.cli("status", passphrase=False)
    assert (done.returncode, done.stdout) == (0, "OK, the HTTP server is ready.\n")
    done = d.cli("status", "--port", "1", passphrase=False)
    assert done.returncode == 1 and done.stderr.startswith("Error: ")


@T.row(f"{S} §1.12", "config passwd FILE|DIR: scrypt$32768$8$1$<salt>$<key>, mode 0440, message on stderr")
def _(d: Double):
    target = d.directory / "passwd-check"
    target.mkdir(exist_ok=True)
    done = d.cli("config", "passwd", str(target), env={"COZY_ADMIN_PASSPHRASE": "another"})
    hashed = target / "cozy-admin-passphrase"
    assert done.returncode == 0 and done.stderr == f"Hashed passphrase will be written in {hashed}\n"
    assert re.fullmatch(r"scrypt\$32768\$8\$1\$[0-9a-f]{32}\$[0-9a-f]{64}", hashed.read_text())
    assert stat.S_IMODE(hashed.stat().st_mode) == 0o440
    done = d.cli("config", "pass", str(target / "file"), env={"COZY_ADMIN_PASSPHRASE": "x"})
    assert done.returncode == 0 and (target / "file").read_text().startswith("scrypt$")
    done = d.cli("config", "passwd", str(target / "f2"), passphrase=False, stdin="")
    assert done.returncode == 1 and done.stderr.startswith("Error: Could not get passphrase")


@T.row(f"{S} §1.1 / §1.2", "instances add: the three lines, the token in hex (= base64 of the API)")
def _(d: Double):
    domain = unique() + ".cozy.test"
    done = d.cli("instances", "add", domain, "--email", "a@example.org", "--locale", "fr")
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and lines[0] == f'Creating instance for domain "{domain}": please wait...'
    assert lines[1] == f"Instance created with success for domain {domain}"
    token = re.fullmatch(r'Registration token: "([0-9a-f]{32})"', lines[2]).group(1)
    assert lines[3] == f"Define your password by visiting https://{domain}/?registerToken={token}"
    shown = d.admin("GET", "/instances/" + domain).json()["data"]["attributes"]
    assert base64.b64decode(shown["register_token"]).hex() == token and shown["locale"] == "fr"


@T.row(f"{S} §1.2", "instances add --passphrase: no token lines; alias `instance create`")
def _(d: Double):
    domain = unique() + ".cozy.test"
    done = d.cli("instance", "create", domain, "--passphrase", "cozy")
    assert done.returncode == 0 and "Registration token" not in done.stdout
    assert d.admin("GET", "/instances/" + domain).json()["data"]["attributes"]["onboarding_finished"] is True


@T.row(f"{S} §1.2", "instances add failures: stderr lines and exit 1 (409, 422, 403)")
def _(d: Double):
    domain = add(d)
    done = d.cli("instances", "add", domain)
    assert done.returncode == 1
    assert done.stderr == f"Failed to create instance for domain {domain}\nError: Conflict: Instance already exists\n"
    done = d.cli("instances", "add", "bad,domain.cozy.test")
    assert done.stderr.endswith("Error: Invalid Parameter: Domain name contains illegal characters\n")
    done = d.cli("instances", "add", unique() + ".cozy.test", env={"COZY_ADMIN_PASSPHRASE": "wrong"})
    assert (done.returncode, done.stderr.splitlines()[-1]) == (1, "Error: Forbidden: bad passphrase")


@T.row(f"{S} §1.1", "the password: COZY_ADMIN_PASSWORD works too; none and no TTY: exit 1")
def _(d: Double):
    done = d.cli("instances", "ls", passphrase=False, env={"COZY_ADMIN_PASSWORD": d.passphrase})
    assert done.returncode == 0
    done = d.cli("instances", "ls", passphrase=False, stdin="")
    assert done.returncode == 1
    assert done.stderr.startswith("Error: Could not get password from standard input: ")


@T.row(f"{S} §1.2 / §1.6", "COZY_DISABLE_INSTANCES_ADD_RM refuses add and rm")
def _(d: Double):
    done = d.cli("instances", "add", "x.cozy.test", env={"COZY_DISABLE_INSTANCES_ADD_RM": "ops freeze"})
    assert (done.returncode, done.stderr) == (1, "Error: Sorry, instances add is disabled: ops freeze\n")
    done = d.cli("instances", "rm", "--force", "x.cozy.test", env={"COZY_DISABLE_INSTANCES_ADD_RM": "1"})
    assert done.returncode == 1 and "disabled" in done.stderr


@T.row(f"{S} §1.2 step 6", "--apps: installed server-side; a missing one prints `/!\\ Application … has not been …`")
def _(d: Double):
    domain = unique() + ".cozy.test"
    done = d.cli("instances", "add", domain, "--apps", "drive,nosuchapp")
    assert done.returncode == 0
    assert "/!\\ Application nosuchapp has not been installed" in done.stdout
    assert "drive" not in done.stdout.split("Define your password")[1]


@T.row(f"{S} §1.3", "instances ls: domain, locale, quota, state, v38, prefix, db prefix; scripts take column 1")
def _(d: Double):
    domain = add(d, "--disk-quota", "5GB", "--locale", "fr")
    done = d.cli("instances", "list")
    line = next(row for row in done.stdout.splitlines() if row.split()[0] == domain)
    prefix = d.admin("GET", "/instances/" + domain).json()["data"]["attributes"]["prefix"]
    assert line.split("  ") and line.split() == [domain, "fr", "5.0", "GB", "onboarding", "v38", prefix, prefix]
    onboarded = add(d, "--passphrase", "x")
    line = next(row for row in d.cli("instances", "ls").stdout.splitlines() if row.startswith(onboarded + " "))
    assert line.split()[1:4] == ["en", "unlimited", "onboarded"]


@T.row(f"{S} §1.3", "instances ls --json (one object per line), --fields, --available-fields")
def _(d: Double):
    domain = add(d)
    objects = [json.loads(line) for line in d.cli("instances", "ls", "--json").stdout.splitlines()]
    assert any(o["domain"] == domain and o["indexes_version"] == 38 for o in objects)
    rows = d.cli("instances", "ls", "--fields", "domain,locale,db_prefix").stdout.splitlines()
    assert any(r.split()[:2] == [domain, "en"] and r.split()[2].startswith("cozy") for r in rows)
    fields = d.cli("instances", "ls", "--available-fields").stdout.split()
    assert fields[0] == "domain" and fields[-1] == "db_prefix" and len(fields) == 26


@T.row(f"{S} §1.4", "instances show: indented {id, meta.rev, attributes}; register_token base64; zero reset time")
def _(d: Double):
    domain = add(d)
    done = d.cli("instances", "show", domain)
    shown = json.loads(done.stdout)
    assert set(shown) == {"id", "meta", "attributes"} and shown["meta"]["rev"]
    assert shown["attributes"]["passphrase_reset_time"] == "0001-01-01T00:00:00Z"
    assert len(base64.b64decode(shown["attributes"]["register_token"])) == 16
    assert "\n" in done.stdout.strip()
    missing = d.cli("instances", "show", "nobody.cozy.test")
    assert (missing.returncode, missing.stderr) == (1, "Error: Not Found: Instance not found\n")


@T.row(f"{S} §1.5", "instances modify: PATCH, prints the instance; --blocked / --blocked=false; MagicLink sent")
def _(d: Double):
    domain = add(d, "--magic_link")
    assert d.admin("GET", "/instances/" + domain).json()["data"]["attributes"]["magic_link"] is True
    done = d.cli("instances", "modify", domain, "--blocked", "--blocking-reason", "PAYMENT_FAILED", "--locale", "de")
    shown = json.loads(done.stdout)["attributes"]
    assert done.returncode == 0 and shown["blocked"] is True and shown["locale"] == "de"
    attrs = d.admin("GET", "/instances/" + domain).json()["data"]["attributes"]
    assert attrs["blocking_reason"] == "PAYMENT_FAILED" and "magic_link" not in attrs  # MagicLink=false sent
    done = d.cli("instances", "modify", domain, "--blocked=false")
    assert "blocked" not in json.loads(done.stdout)["attributes"]


@T.row(f"{S} §1.5", "set-disk-quota DOMAIN 3GB: 3 000 000 000 bytes, silent; 0 removes the quota")
def _(d: Double):
    domain = add(d)
    done = d.cli("instances", "set-disk-quota", domain, "3GB")
    assert (done.returncode, done.stdout) == (0, "")
    assert d.admin("GET", "/instances/" + domain).json()["data"]["attributes"]["disk_quota"] == "3000000000"
    d.cli("instances", "set-disk-quota", domain, "2GiB")
    assert d.admin("GET", "/instances/" + domain).json()["data"]["attributes"]["disk_quota"] == str(2 * 2**30)
    d.cli("instances", "set-disk-quota", domain, "0")
    assert "disk_quota" not in d.admin("GET", "/instances/" + domain).json()["data"]["attributes"]


@T.row(f"{S} §1.6", "instances destroy: the prompt; a wrong answer aborts; --force; aliases rm, delete, remove")
def _(d: Double):
    domain = add(d)
    done = d.cli("instances", "destroy", domain, stdin="not it\n")
    assert done.returncode == 1 and done.stderr == "Error: Aborted\n"
    assert done.stdout.startswith(f"Are you sure you want to remove instance for domain {domain}?\n"
                                  "All data associated with this domain will be permanently lost.\n"
                                  "Type again the domain to confirm: ")
    done = d.cli("instances", "destroy", domain, stdin=domain + "\n")
    assert done.stdout.endswith(f"Instance for domain {domain} has been destroyed with success\n")
    for alias in ("rm", "delete", "remove"):
        other = add(d)
        done = d.cli("instances", alias, "--force", other)
        assert done.stdout == f"Instance for domain {other} has been destroyed with success\n"
        assert d.admin("GET", "/instances/" + other).status == 404


@T.row(f"{S} §1.8 / files-data §4", "token-cli DOMAIN SCOPES…: the token alone on a line, usable on the public API")
def _(d: Double):
    domain = add(d)
    done = d.cli("instances", "token-cli", domain, "io.cozy.files", "io.cozy.contacts")
    token = done.stdout.strip()
    assert done.returncode == 0 and done.stdout.count("\n") == 1 and token.count(".") == 2
    d.minted.append(token)
    assert d.public("GET", "/files/io.cozy.files.root-dir", domain, token).status == 200
    assert d.public("GET", "/data/io.cozy.contacts/_all_docs", domain, token).status == 200
    assert d.public("GET", "/data/io.cozy.photos.albums/_all_docs", domain, token).status == 403


@T.row(f"{S} §1.11", "apps install / ls / update, with --domain or COZY_DOMAIN")
def _(d: Double):
    domain = add(d)
    done = d.cli("apps", "install", "drive", "--domain", domain)
    assert (done.returncode, done.stdout) == (0, f"drive (1.0.0) has been installed on {domain}\n"), done.stderr
    done = d.cli("apps", "install", "notes", "registry://notes/beta", env={"COZY_DOMAIN": domain})
    assert done.stdout == f"notes (1.1.0-beta.1) has been installed on {domain}\n"
    rows = [line.split() for line in d.cli("apps", "ls", "--domain", domain).stdout.splitlines()]
    assert ["drive", "registry://drive/stable", "1.0.0", "ready"] in rows
    done = d.cli("apps", "update", "drive", "--domain", domain)
    assert done.stdout == "drive is already up-to-date at 1.0.0\n"
    done = d.cli("apps", "update", "drive", "registry://drive/beta", "--domain", domain)
    assert done.stdout == "drive has been upgraded to 1.1.0-beta.1\n"
    done = d.cli("apps", "update", "drive", "registry://drive/stable", "--domain", domain)
    assert done.stdout == "drive has been downgraded to 1.0.0\n"
    done = d.cli("apps", "install", "nosuchapp", "--domain", domain)
    assert done.returncode == 1 and done.stderr.startswith("Error: ")
    done = d.cli("apps", "ls")
    assert (done.returncode, done.stderr) == (1, "Error: Missing --domain flag, or COZY_DOMAIN env variable\n")


@T.row(f"{S} §1.1", "global flags: --admin-port and --admin-host reach the admin API given")
def _(d: Double):
    done = d.cli("--admin-host", "127.0.0.1", "instances", "--admin-port", str(d.admin_port), "count")
    assert done.returncode == 0 and re.fullmatch(r"\d+ instances?\n", done.stdout)
    done = d.cli("instances", "count", "--admin-port", "1")
    assert done.returncode == 1 and done.stderr.startswith("Error: ") and d.passphrase not in done.stderr


@pytest.mark.parametrize("check", T.rows)
def test_cli(nested, check):
    check(nested)


def test_flat_mode_cli(flat):
    """cozy-stack.md §1.2 / §9.11 through the CLI of a flat-mode stack: a `-` in the first label is refused."""
    done = flat.cli("instances", "add", unique("alice-") + ".cozy.test")
    assert done.returncode == 1
    assert done.stderr.endswith("Error: Invalid Parameter: Domain name contains illegal characters\n")


def test_double_needs_only_stdlib_and_yaml():
    """The double runs on a bare Debian host: its modules import the standard library, PyYAML and each other."""
    for path in sorted((LAB_DIR / "stackdouble").glob("*.py")):
        tree = ast.parse(path.read_text())
        first = ast.get_docstring(tree).splitlines()[0] if path.name == "__init__.py" else None
        if first is not None:
            assert first.startswith("A test double of cozy-stack") and "cozy-stack.md" in first
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top == "yaml", f"{path.name} imports {name}"



