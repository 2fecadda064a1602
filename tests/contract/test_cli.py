"""The ``cozy-stack`` command line (cozy-stack.md §1), run as a real process against the running double."""

from __future__ import annotations

import ast
import base64
import json
import re
import stat
import subprocess
import sys
import time
import zipfile

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


CONFIG_GO = "cmd/config.go"


@T.row(f"{CONFIG_GO} adminPasswdCmd", "config passwd DIR|FILE: message first, hash + newline, mode 0440, in place")
def _(d: Double):
    from stackdouble import secret

    target = d.directory / "passwd-check"
    target.mkdir(exist_ok=True)
    done = d.cli("config", "passwd", str(target), env={"COZY_ADMIN_PASSPHRASE": "another"})
    hashed = target / "cozy-admin-passphrase"
    assert (done.returncode, done.stdout) == (0, "")
    assert done.stderr == f"Hashed passphrase will be written in {hashed}\n"
    assert re.fullmatch(r"scrypt\$32768\$8\$1\$[0-9a-f]{32}\$[0-9a-f]{64}\n", hashed.read_text())
    assert secret.verify("another", hashed.read_text()) and not secret.verify("other", hashed.read_text())
    assert stat.S_IMODE(hashed.stat().st_mode) == 0o440
    inode = hashed.stat().st_ino
    done = d.cli("config", "pass", "passwd-check/cozy-admin-passphrase", env={"COZY_ADMIN_PASSPHRASE": "x"})
    assert done.returncode == 0 and hashed.stat().st_ino == inode and secret.verify("x", hashed.read_text())
    assert done.stderr == f"Hashed passphrase will be written in {hashed}\n"  # relative made absolute


@T.row(f"{CONFIG_GO} adminPasswdCmd", "config passwd: no path prints the hash; no passphrase and no terminal: exit 1")
def _(d: Double):
    from stackdouble import secret

    done = d.cli("-c", "/dev/null", "config", "passwd", env={"COZY_ADMIN_PASSPHRASE": "p"})
    assert (done.returncode, done.stderr) == (0, "") and done.stdout.endswith("\n")
    assert secret.verify("p", done.stdout)
    target = d.directory / "passwd-none"
    done = d.cli("config", "passwd", str(target), passphrase=False, stdin="typed\ntyped\n")
    assert done.returncode == 1 and not target.exists()
    assert done.stderr == (f"Hashed passphrase will be written in {target}\nPassphrase: \n"
                           "Error: inappropriate ioctl for device\n")
    done = d.cli("config", "passwd", "a", "b")
    assert done.returncode == 0 and done.stderr.startswith("usage: ") and not (d.directory / "a").exists()


@T.row(f"{CONFIG_GO} genKeysCmd / keyring.GenerateEncodedNACLKeyPair",
       "config gen-keys PATH: PATH.enc and PATH.dec, PEM `NACL KEY`, 0400, a working NaCl box pair")
def _(d: Double):
    from nacl.public import Box, PrivateKey, PublicKey

    base = d.directory / unique("vault-")
    done = d.cli("-c", "/dev/null", "config", "gen-keys", str(base))
    enc, dec = base.with_name(base.name + ".enc"), base.with_name(base.name + ".dec")
    assert (done.returncode, done.stdout) == (0, "")
    assert done.stderr == f"keyfiles written in:\n  {enc}\n  {dec}\n"
    keys = {}
    for path in (enc, dec):
        assert stat.S_IMODE(path.stat().st_mode) == 0o400
        text = path.read_text()
        lines = text.splitlines()
        assert text.endswith("-----END NACL KEY-----\n") and lines[0] == "-----BEGIN NACL KEY-----"
        assert [len(line) for line in lines[1:-1]] == [64, 24]
        raw = base64.b64decode("".join(lines[1:-1]))
        keys[path.suffix] = (PublicKey(raw[:32]), PrivateKey(raw[32:]))
    # The encryptor seals for the decryptor (account.EncryptBufferWithKey / DecryptBufferWithKey).
    sealed = Box(keys[".enc"][1], keys[".enc"][0]).encrypt(b'{"login": "me"}')
    assert Box(keys[".dec"][1], keys[".dec"][0]).decrypt(sealed) == b'{"login": "me"}'
    assert keys[".enc"][1].public_key.encode() == keys[".dec"][0].encode()


@T.row(f"{CONFIG_GO} genKeysCmd / writeFile", "config gen-keys: an existing key file is an error (O_EXCL); none: usage")
def _(d: Double):
    base = d.directory / unique("vault-")
    base.with_name(base.name + ".dec").write_text("kept")
    done = d.cli("config", "gen-keys", str(base))
    assert (done.returncode, done.stderr) == (1, f"Error: open {base}.dec: file exists\n")
    assert base.with_name(base.name + ".dec").read_text() == "kept"
    done = d.cli("config", "gen-keys")
    assert done.returncode == 0 and done.stderr.startswith("usage: ")


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
    done = d.cli("apps", "ls")  # cmd/apps.go lsApps: the message, the usage, and cmd.Usage()'s nil: exit 0
    assert done.returncode == 0 and done.stderr.startswith("Missing --domain flag, or COZY_DOMAIN env variable\nusage:")


INSTANCES_GO = "cmd/instances.go"
APPS_GO = "cmd/apps.go"


@T.row(f"{INSTANCES_GO} lsInstanceCmd", "ls --json [--fields]: compact JSON; fields: a map (sorted, null if absent)")
def _(d: Double):
    domain = add(d, "--locale", "fr")
    lines = d.cli("instances", "ls", "--json", "--fields", "locale,domain,db_prefix,oidc_id").stdout.splitlines()
    line = next(row for row in lines if f'"domain":"{domain}"' in row)
    prefix = d.admin("GET", "/instances/" + domain).json()["data"]["attributes"]["prefix"]
    assert line == f'{{"db_prefix":"{prefix}","domain":"{domain}","locale":"fr","oidc_id":null}}'
    full = next(row for row in d.cli("instances", "ls", "--json").stdout.splitlines() if domain in row)
    # client.Instance's attributes in the struct's order (prefix before locale), compact.
    assert full.startswith(f'{{"domain":"{domain}","prefix":"{prefix}","locale":"fr",') and ", " not in full


@T.row(f"{INSTANCES_GO} showInstanceCmd / modifyInstanceCmd", "show and modify: json.MarshalIndent with two spaces")
def _(d: Double):
    domain = add(d)
    for done in (d.cli("instances", "show", domain), d.cli("instances", "modify", domain, "--locale", "de")):
        lines = done.stdout.splitlines()
        assert lines[0] == "{" and lines[1].startswith('  "id": "') and lines[-1] == "}"
        assert '  "attributes": {' in lines and f'    "domain": "{domain}",' in lines and "\t" not in done.stdout


@T.row(f"{INSTANCES_GO} destroyInstanceCmd / confirmDomain", "answer lower-cased; a blank line after; none: EOF")
def _(d: Double):
    domain = add(d)
    done = d.cli("instances", "rm", domain, stdin="")
    assert (done.returncode, done.stderr) == (1, "Error: EOF\n")
    done = d.cli("instances", "rm", domain, stdin=domain.upper() + "\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(f"Type again the domain to confirm: \nInstance for domain {domain} has been destroyed"
                                " with success\n")


@T.row(f"{INSTANCES_GO} updateInstancePassphraseCmd / web/settings/passphrase.go",
       "set-passphrase DOMAIN PASS: PUT /settings/passphrase forced by a CLI token; the printed line")
def _(d: Double):
    from stackdouble import secret

    domain = add(d)
    done = d.cli("instances", "set-passphrase", domain, "n3w-P4ss")
    assert (done.returncode, done.stdout) == (0, f"Passphrase has been changed for instance  {domain}\n"), done.stderr
    doc = json.loads(d.request(d.couch_port, "GET", "/global%2Finstances/" +
                               d.admin("GET", "/instances/" + domain).json()["data"]["id"]).body)
    assert secret.verify("n3w-P4ss", base64.b64decode(doc["passphrase_hash"]).decode())
    assert doc["password_defined"] is True
    assert d.cli("instances", "set-passphrase", domain).returncode == 0  # one argument: the usage
    done = d.cli("instances", "set-passphrase", "nobody.cozy.test", "x")
    assert done.returncode == 1 and done.stderr.startswith("Could not generate access to domain nobody.cozy.test\n")


@T.row(f"{INSTANCES_GO} cleanSessionsCmd / web/instances cleanSessions",
       "clean-sessions DOMAIN: both session databases go, silently")
def _(d: Double):
    domain = add(d, "--passphrase", "x")
    prefix = d.admin("GET", "/instances/" + domain).json()["data"]["attributes"]["prefix"]
    logins = "/" + prefix + "%2Fio-cozy-sessions-logins"
    assert d.request(d.couch_port, "GET", logins).status == 200
    done = d.cli("instances", "clean-sessions", domain)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert d.request(d.couch_port, "GET", logins).status == 404
    assert d.cli("instances", "clean-sessions", domain).returncode == 0  # no database is fine


@T.row("cmd/files.go usageFilesCmd", "files usage --domain D [--trash]: the lines of the fields the route sends")
def _(d: Double):
    domain = add(d)
    done = d.cli("files", "usage", "--domain", domain)
    assert done.stdout == "Usage: 0\nDocuments count: 6\n", done.stderr  # root, trash, 4 default folders
    token = d.token(domain)
    created = d.public("POST", "/files/", domain, token, {"Type": "file", "Name": "t.txt"}, body=b"12345").json()
    prefix = d.admin("GET", "/instances/" + domain).json()["data"]["attributes"]["prefix"]
    path = f"/{prefix}%2Fio-cozy-files/{created['data']['id']}"
    trashed = {**json.loads(d.request(d.couch_port, "GET", path).body), "trashed": True}  # as the trash route does
    d.request(d.couch_port, "PUT", path, body=json.dumps(trashed).encode(),
              headers={"Content-Type": "application/json"})
    d.cli("instances", "set-disk-quota", domain, "1GB")
    done = d.cli("files", "usage", "--domain", domain, "--trash")
    assert done.stdout == ("Usage: 5\n  Including latest version of files: 5\n  Including trashed files: 5\n"
                           "Quota: 1000000000\nDocuments count: 7\n")
    assert "trashed" not in d.cli("files", "usage", "--domain", domain).stdout
    done = d.cli("files", "usage")
    assert done.returncode == 0 and done.stderr.startswith("Missing --domain flag, or COZY_DOMAIN env variable\n")


@T.row("cmd/check.go checkFSCmd / fsck", "check fs DOMAIN: nothing, exit 0 when sound; a JSON line a problem, exit 1")
def _(d: Double):
    domain = add(d)
    token = d.token(domain)
    d.public("POST", "/files/", domain, token, {"Type": "file", "Name": "kept.txt"}, body=b"kept")
    done = d.cli("check", "fs", domain)
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
    (d.directory / "storage" / domain / "kept.txt").unlink()
    (d.directory / "storage" / domain / "stray.txt").write_bytes(b"stray")
    done = d.cli("check", "fs", domain)
    logs = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 1 and done.stderr == ""
    assert {(log["type"], (log.get("file_doc") or {}).get("name")) for log in logs} == {
        ("index_missing", "stray.txt"), ("filesystem_missing", "kept.txt")}
    assert d.cli("check", "fs", domain, "--index-integrity").stdout == ""
    done = d.cli("check", "fs", domain, "--fail-fast")
    assert done.returncode == 1 and len(done.stdout.splitlines()) == 1


@T.row(f"{APPS_GO} uninstallApp / showApp / web/apps deleteHandler",
       "apps show (MarshalIndent of the manifest), apps uninstall: `<slug> has been uninstalled`; then 404")
def _(d: Double):
    domain = add(d)
    d.cli("apps", "install", "photos", "--domain", domain)
    done = d.cli("apps", "show", "photos", "--domain", domain)
    shown = json.loads(done.stdout)
    assert done.stdout.startswith('{\n  "name": "photos",\n  "editor": "",')
    assert (shown["slug"], shown["version"], shown["created_at"]) == ("photos", "1.0.0", "0001-01-01T00:00:00Z")
    done = d.cli("apps", "uninstall", "photos", "--domain", domain)
    assert (done.returncode, done.stdout) == (0, "photos has been uninstalled\n"), done.stderr
    done = d.cli("apps", "show", "photos", "--domain", domain)
    assert (done.returncode, done.stderr) == (1, "Error: Not Found: Application is not installed\n")
    done = d.cli("apps", "rm", "photos", "--domain", domain)
    assert (done.returncode, done.stderr) == (1, "Error: Not Found: Application is not installed\n")


@T.row(f"{APPS_GO} installApp / updateApp / uninstallApp / lsApps (konnectors)",
       "konnectors install / update / ls / uninstall on io.cozy.konnectors")
def _(d: Double):
    domain = add(d)
    done = d.cli("konnectors", "install", "trainline", "--domain", domain)
    assert (done.returncode, done.stdout) == (0, f"trainline (1.0.0) has been installed on {domain}\n"), done.stderr
    rows = [line.split() for line in d.cli("konnectors", "ls", "--domain", domain).stdout.splitlines()]
    assert rows == [["trainline", "registry://trainline/stable", "1.0.0", "ready"]]
    assert "trainline" not in d.cli("apps", "ls", "--domain", domain).stdout
    done = d.cli("konnectors", "update", "trainline", "registry://trainline/beta", "--domain", domain)
    assert done.stdout == "trainline has been upgraded to 1.1.0-beta.1\n"
    done = d.cli("konnectors", "uninstall", "trainline", "--domain", domain)
    assert done.stdout == "trainline has been uninstalled\n"
    assert d.cli("konnectors", "ls", "--domain", domain).stdout == ""


@T.row(f"{INSTANCES_GO} addInstanceCmd, showInstanceCmd, modifyInstanceCmd, destroyInstanceCmd, … (cmd.Usage())",
       "a missing argument prints the usage and exits 0; rm disabled says `instances add is disabled`")
def _(d: Double):
    for argv in (["add"], ["show"], ["modify"], ["set-disk-quota", "x.cozy.test"], ["rm"], ["token-cli", "x.test"],
                 ["token-app", "x.test"], ["show-db-prefix"], ["clean-sessions"], ["set-passphrase", "x.test"]):
        done = d.cli("instances", *argv)
        assert (done.returncode, done.stdout) == (0, "") and done.stderr.startswith("usage: "), argv
    done = d.cli("instances", "rm", "--force", "x.cozy.test", env={"COZY_DISABLE_INSTANCES_ADD_RM": "frozen"})
    assert (done.returncode, done.stderr) == (1, "Error: Sorry, instances add is disabled: frozen\n")


@T.row("pkg/config/config/config.go Setup / funcs_map.go numericFuncsMap",
       "cozy.yml is a Go template: .Env, .NumCPU, add/sub/div/mod/mul, pipes; an unknown function is refused")
def _(d: Double):
    templated = d.directory / "templated.yml"
    templated.write_text(
        "# concurrency: {{mul .NumCPU 4}}\n"
        f"admin:\n  host: {{{{ .Env.DOUBLE_HOST }}}}\n  port: {{{{ sub {d.admin_port + 7} (add 3 4) }}}}\n"
        f"port: {{{{ {d.public_port} | mul 1 }}}}\n")
    done = d.cli("-c", str(templated), "instances", "count", env={"DOUBLE_HOST": "127.0.0.1"})
    assert done.returncode == 0 and re.fullmatch(r"\d+ instances?\n", done.stdout), done.stderr
    templated.write_text("admin:\n  port: {{ max 1 2 }}\n")
    done = d.cli("-c", str(templated), "instances", "count")
    assert (done.returncode, done.stderr) == (
        1, f'Error: Unable to open and parse configuration file template {templated}: template: templated.yml:2: '
           'function "max" not defined\n')


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
    for path in sorted((LAB_DIR / "stackdouble").rglob("*.py")):
        tree = ast.parse(path.read_text())
        top_init = path.relative_to(LAB_DIR).parts == ("stackdouble", "__init__.py")
        first = ast.get_docstring(tree).splitlines()[0] if top_init else None
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





# cozy-stack's debian/cozy-stack.postinst at db1163854, the lines that run cozy-stack, verbatim but for
# /etc/cozy (a scratch directory here) and the chown to the cozy-stack user (no such user here).
POSTINST = r"""
		if [ ! -f /etc/cozy/cozy-admin-passphrase ]; then
			db_get cozy-stack/cozy/password && COZY_PASS="${RET}"
			COZY_ADMIN_PASSPHRASE="${COZY_PASS}" cozy-stack -c /dev/null config passwd /etc/cozy/cozy-admin-passphrase
			printf "%s" "${COZY_PASS}" > /etc/cozy/.cozy-admin-passphrase
			chmod u=rw,og= /etc/cozy/.cozy-admin-passphrase
		fi

	if [ ! -f /etc/cozy/vault.enc ] || [ ! -f /etc/cozy/vault.dec ]; then
		cozy-stack -c /dev/null config gen-keys /etc/cozy/vault
		chmod u=rw,og= /etc/cozy/vault.enc /etc/cozy/vault.dec
	fi
"""


def run_postinst(tmp_path, etc) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "cozy-stack"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={LAB_DIR} exec {sys.executable} -m stackdouble "$@"\n')
    wrapper.chmod(0o755)
    script = "set -e\ndb_get() { RET=secret-from-debconf; }\n" + POSTINST.replace("/etc/cozy", str(etc))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(["sh", "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_debian_postinst_lines(tmp_path):
    """debian/cozy-stack.postinst: `config passwd` then `config gen-keys` with `-c /dev/null`, under `set -e`."""
    from nacl.public import Box, PrivateKey, PublicKey
    from stackdouble import secret

    etc = tmp_path / "etc-cozy"
    etc.mkdir()
    done = run_postinst(tmp_path, etc)
    assert done.returncode == 0, done.stderr
    assert done.stderr == (f"Hashed passphrase will be written in {etc}/cozy-admin-passphrase\n"
                           f"keyfiles written in:\n  {etc}/vault.enc\n  {etc}/vault.dec\n")
    assert secret.verify((etc / ".cozy-admin-passphrase").read_text(), (etc / "cozy-admin-passphrase").read_text())
    raw = {s: base64.b64decode("".join((etc / f"vault.{s}").read_text().splitlines()[1:-1])) for s in ("enc", "dec")}
    sealed = Box(PrivateKey(raw["enc"][32:]), PublicKey(raw["enc"][:32])).encrypt(b"creds")
    assert Box(PrivateKey(raw["dec"][32:]), PublicKey(raw["dec"][:32])).decrypt(sealed) == b"creds"
    assert {stat.S_IMODE((etc / f"vault.{s}").stat().st_mode) for s in ("enc", "dec")} == {0o600}
    before = {p.name: p.read_bytes() for p in etc.iterdir()}
    again = run_postinst(tmp_path, etc)  # a second configure keeps the passphrase and the keys
    assert (again.returncode, again.stderr) == (0, "")
    assert {p.name: p.read_bytes() for p in etc.iterdir()} == before


def test_export_on_one_double_import_on_another(doubles, tmp_path):
    """cmd/instances.go exportCmd / importCmd: `instances export --path` on the nested double (it waits for the
    export on the admin realtime socket and downloads the part), `instances import` on the flat double from the
    export's manifest URL: the files and the documents move."""
    from stackdouble import move

    source_double, target_double = doubles["nested"], doubles["flat"]
    source = f"127.0.0.1:{source_double.public_port}"  # reachable from the target without DNS
    if source_double.admin("GET", "/instances/" + source).status == 404:
        assert source_double.create(source).status == 201
    token = source_double.token(source)
    name = unique() + ".txt"
    source_double.public("POST", "/files/", source, token, {"Type": "file", "Name": name}, body=b"moved by the CLI")
    contact = source_double.public("POST", "/data/io.cozy.contacts/", source, token, body=b'{"fullname": "Ada"}',
                                   headers={"Content-Type": "application/json"}).json()["id"]
    out = tmp_path / "exports"
    out.mkdir()
    (out / f"{source} - part000.zip").write_bytes(b"an older download, replaced")
    done = source_double.cli("instances", "export", "--domain", source, "--path", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"Exporting archive 1/1 ({source} - part000.zip)... \u2705\n"
    part = out / f"{source} - part000.zip"
    assert stat.S_IMODE(part.stat().st_mode) == 0o600
    names = zipfile.ZipFile(part).namelist()
    assert "My Cozy/Files/" + name in names and f"My Cozy/Data/io.cozy.contacts/{contact}.json" in names

    exports = json.loads(source_double.request(source_double.couch_port, "GET",
                                               "/global%2Fio-cozy-exports/_all_docs?include_docs=true").body)
    export = max((r["doc"] for r in exports["rows"] if r["doc"].get("domain") == source),
                 key=lambda doc: doc["created_at"])
    inst_id = source_double.admin("GET", "/instances/" + source).json()["data"]["id"]
    raw = json.loads(source_double.request(source_double.couch_port, "GET", "/global%2Finstances/" + inst_id).body)
    url = f"http://{source}/move/exports/{move.encode_mac(raw, export['_id'])}"

    target = unique() + ".cozy.test"
    assert target_double.cli("instances", "add", target).returncode == 0
    done = target_double.cli("instances", "import", "--domain", target, url, stdin="no\n")
    assert (done.returncode, done.stderr) == (1, "Error: Aborted\n")
    done = target_double.cli("instances", "import", "--domain", target, "--force", url)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    target_token = target_double.token(target)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = target_double.public("GET", "/files/download", target, target_token, {"Path": "/" + name})
        blocked = target_double.admin("GET", "/instances/" + target).json()["data"]["attributes"].get("blocked")
        if got.status == 200 and not blocked:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the import did not bring the file")
    assert got.body == b"moved by the CLI"
    moved = target_double.public("GET", f"/data/io.cozy.contacts/{contact}", target, target_token)
    assert moved.status == 200 and moved.json()["fullname"] == "Ada"
    done = target_double.cli("instances", "import", "--domain", target)
    assert (done.returncode, done.stderr) == (1, "Error: The URL to the exported data is missing\n")
    done = target_double.cli("instances", "export", "--path", str(out))
    assert (done.returncode, done.stderr) == (1, 'Error: required flag(s) "domain" not set\n')


@pytest.fixture(scope="module")
def own(tmp_path_factory, scratch_home):
    """A double of its own, so that commands working on every instance see only this test's instances."""
    from .conftest import start_double, stop

    started: list = []
    try:
        yield start_double(tmp_path_factory.mktemp("own-double"), "nested", started)
    finally:
        for proc in reversed(started):
            stop(proc)


def test_apps_on_all_domains(own):
    """cmd/apps.go installApp / updateApp with --all-domains (foreachDomains): a line a domain done, the ones
    already in the wanted state skipped silently, an error reported as `<domain>: <error>` and the loop going
    on, then `Error: At least one error occurred while executing this command` and exit 1."""
    a, b, c = (add(own) for _ in range(3))
    assert own.cli("apps", "install", "notes", "--domain", a).returncode == 0
    done = own.cli("apps", "install", "notes", "--all-domains")
    assert (done.returncode, done.stderr) == (0, "")
    assert sorted(done.stdout.splitlines()) == sorted(f"Application installed successfully on {d}" for d in (b, c))
    # c's notes now comes from a source the registry does not know: its update fails, the others go on.
    prefix = own.admin("GET", "/instances/" + c).json()["data"]["attributes"]["prefix"]
    path = f"/{prefix}%2Fio-cozy-apps/io.cozy.apps%2Fnotes"
    doc = {**json.loads(own.request(own.couch_port, "GET", path).body), "source": "registry://notes/nightly"}
    own.request(own.couch_port, "PUT", path, body=json.dumps(doc).encode(),
                headers={"Content-Type": "application/json"})
    assert own.cli("apps", "uninstall", "notes", "--domain", b).returncode == 0
    done = own.cli("apps", "update", "notes", "--all-domains")
    assert done.returncode == 1
    assert done.stdout == f"Application updated successfully on {a}\n"  # b has no notes: skipped
    assert done.stderr == (f"{c}: Application not found\n"
                           "Error: At least one error occurred while executing this command\n")


# cozy-stack's debian/uninstall-onboarding.sh at db1163854 (run by the postinst on upgrades from before
# 2:1.2.0-1), verbatim.
UNINSTALL_ONBOARDING = r"""
function app_installed {
	DOMAIN="${1}"
	APP="${2}"
	cozy-stack apps show --domain "${DOMAIN}" "${APP}" &>/dev/null
}

function uninstall_app {
	DOMAIN="${1}"
	APP="${2}"
	if app_installed "${@}"; then
		echo "    Uninstalling app ${APP}"
		cozy-stack apps uninstall --domain "${DOMAIN}" "${APP}" 1>/dev/null
	else
		echo "    App ${APP} already uninstalled, nothing to do"
	fi
}

echo "Uninstall onboarding"
cozy-stack instances ls | awk '{print $1}' | while read domain; do
		echo "  Migrating ${domain}"
		uninstall_app "${domain}" onboarding
done
"""


def test_debian_uninstall_onboarding_lines(own, tmp_path):
    """debian/uninstall-onboarding.sh: `instances ls` column 1, `apps show` as a test, `apps uninstall`."""
    with_app = add(own)
    assert own.cli("apps", "install", "onboarding", "--domain", with_app).returncode == 0
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "cozy-stack"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={LAB_DIR} exec {sys.executable} -m stackdouble '
                       f'-c {own.directory / "cozy.yml"} "$@"\n')
    wrapper.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "COZY_ADMIN_PASSPHRASE": own.passphrase}
    done = subprocess.run(["bash", "-e", "-c", UNINSTALL_ONBOARDING], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    domains = [line.split()[0] for line in own.cli("instances", "ls").stdout.splitlines()]
    expected = ["Uninstall onboarding"]
    for domain in domains:
        expected += [f"  Migrating {domain}", "    Uninstalling app onboarding" if domain == with_app
                     else "    App onboarding already uninstalled, nothing to do"]
    assert done.stdout.splitlines() == expected
    assert own.cli("apps", "show", "--domain", with_app, "onboarding").returncode == 1
