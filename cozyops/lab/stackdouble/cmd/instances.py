"""``cozy-stack instances …`` (cozy-stack's ``cmd/instances.go``, ``client/instances.go``)."""

from __future__ import annotations

import base64
import json
import os
import sys
from urllib.parse import quote

from . import check
from .root import (
    Client,
    CliError,
    _bool,
    _list,
    confirm_domain,
    go_error,
    go_json,
    go_value,
    group,
    human_bytes,
    parse_bytes,
    sub,
    tabulate,
    usage,
    valid_domain,
)

AVAILABLE_FIELDS = (
    "domain", "domain_aliases", "old_domain", "prefix", "locale", "uuid", "oidc_id", "context", "sponsorships",
    "feature_sets", "tos", "tos_latest", "auth_mode", "no_auto_update", "blocked", "onboarding_finished",
    "password_defined", "magic_link", "disk_quota", "indexes_version", "couch_cluster", "swift_cluster",
    "passphrase_reset_token", "passphrase_reset_time", "register_token", "db_prefix",
)
# Fields of the CLI's Instance struct that are always printed (the others are omitted when empty).
ALWAYS = {"domain", "locale", "onboarding_finished", "password_defined", "indexes_version", "passphrase_reset_token",
          "passphrase_reset_time"}
ZERO_TIME = "0001-01-01T00:00:00Z"


# --- the client struct's rendering (client/instances.go)
def client_attributes(attrs: dict) -> dict:
    out = {}
    for name in AVAILABLE_FIELDS[:-1]:
        value = attrs.get(name)
        if name == "passphrase_reset_time" and not value:
            value = ZERO_TIME
        if name in ALWAYS:
            out[name] = value if value is not None or name == "password_defined" else (
                False if name == "onboarding_finished" else None)
            if name == "indexes_version" and value is None:
                out[name] = 0
        elif value not in (None, "", [], False, 0):
            out[name] = value
    return out


def client_instance(resource: dict) -> dict:
    return {"id": resource["id"], "meta": {"rev": resource.get("meta", {}).get("rev")},
            "attributes": client_attributes(resource.get("attributes", {}))}


def db_prefix(attrs: dict) -> str:
    return attrs.get("prefix") or attrs.get("domain", "").replace(".", "-").replace(":", "-")



def cmd_instances_add(args, client: Client) -> int:
    if os.environ.get("COZY_DISABLE_INSTANCES_ADD_RM"):
        raise CliError(f"Sorry, instances add is disabled: {os.environ['COZY_DISABLE_INSTANCES_ADD_RM']}")
    if not args.domain:
        return usage(args, 0)
    if args.dev:
        print("The --dev flag has been deprecated", file=sys.stderr)
    domain = args.domain
    if not valid_domain(domain):
        raise CliError("Invalid domain")
    quota = parse_bytes(args.disk_quota) if args.disk_quota else 0
    query = {"Domain": domain, "OldDomain": args.old_domain or "", "Locale": args.locale, "UUID": args.uuid or "",
             "OIDCID": args.oidc_id or "", "FranceConnectID": args.franceconnect_id or "", "TOSSigned": "",
             "Timezone": args.tz or "", "ContextName": args.context_name or "", "Email": args.email or "",
             "PublicName": args.public_name or "", "Phone": args.phone or "", "Settings": args.settings or "",
             "SwiftLayout": str(args.swift_layout), "CouchCluster": str(args.couch_cluster), "DiskQuota": str(quota),
             "Apps": ",".join(args.apps), "Passphrase": args.passphrase or "", "KdfIterations": "0"}
    if args.domain_aliases:
        query["DomainAliases"] = ",".join(args.domain_aliases)
    if args.sponsorships:
        query["Sponsorships"] = ",".join(args.sponsorships)
    if args.magic_link:
        query["MagicLink"] = "true"
    if args.trace:
        query["Trace"] = "true"
    print(f'Creating instance for domain "{domain}": please wait...', flush=True)
    try:
        _, body = client.admin_call("POST", "/instances", dict(sorted(query.items())))
    except CliError:
        print(f"Failed to create instance for domain {domain}", file=sys.stderr)
        raise
    attrs = json.loads(body)["data"]["attributes"]
    print(f"Instance created with success for domain {domain}")
    if attrs.get("register_token"):
        token = base64.b64decode(attrs["register_token"]).hex()
        print(f'Registration token: "{token}"')
        print(f"Define your password by visiting https://{domain}/?registerToken={token}")
    if args.apps:
        token = client.token(domain, "cli", ["io.cozy.apps"], "CLI")
        _, _, listing = client.public_call(domain, token, "GET", "/apps/")
        installed = {a["attributes"].get("slug") for a in json.loads(listing).get("data", [])}
        for slug in args.apps:
            if slug not in installed:
                print(f"/!\\ Application {slug} has not been installed")
    return 0


def cmd_instances_ls(args, client: Client) -> int:
    if args.available_fields:
        print("\n".join(AVAILABLE_FIELDS))
        return 0
    _, body = client.admin_call("GET", "/instances")
    resources = json.loads(body).get("data", [])
    if args.json:
        for resource in resources:
            attrs = client_attributes(resource["attributes"])
            if args.fields:  # a map: Go sorts its keys; a field the struct omitted is null
                values = {name: (db_prefix(resource["attributes"]) if name == "db_prefix" else attrs.get(name))
                          for name in args.fields}
                print(go_json(dict(sorted(values.items()))))
            else:
                print(go_json(attrs))
        return 0
    rows = []
    for resource in resources:
        attrs = resource["attributes"]
        if args.fields:
            row = []
            for name in args.fields:
                value = db_prefix(attrs) if name == "db_prefix" else client_attributes(attrs).get(name)
                row.append(go_value(value))
            rows.append(row)
            continue
        quota = int(attrs.get("disk_quota") or 0)
        state = "onboarded" if attrs.get("onboarding_finished") else (
            "onboarding" if attrs.get("register_token") else "pending")
        rows.append([attrs["domain"], attrs.get("locale", ""), human_bytes(quota) if quota else "unlimited", state,
                     f"v{attrs.get('indexes_version', 0)}", attrs.get("prefix", ""), db_prefix(attrs)])
    sys.stdout.write(tabulate(rows))
    return 0


def cmd_instances_show(args, client: Client) -> int:
    if not args.domain:
        return usage(args, 0)  # cmd.Usage(): exit 0
    _, body = client.admin_call("GET", "/instances/" + quote(args.domain, safe=""))
    print(go_json(client_instance(json.loads(body)["data"]), indent=True))
    return 0


def cmd_instances_modify(args, client: Client) -> int:
    if not args.domain:
        return usage(args, 0)  # cmd.Usage(): exit 0
    query: dict = {}
    for flag, param in (("locale", "Locale"), ("uuid", "UUID"), ("oidc_id", "OIDCID"),
                        ("franceconnect_id", "FranceConnectID"), ("tos", "TOSSigned"), ("tos_latest", "TOSLatest"),
                        ("tz", "Timezone"), ("context_name", "ContextName"), ("email", "Email"),
                        ("public_name", "PublicName"), ("phone", "Phone"), ("settings", "Settings"),
                        ("blocking_reason", "BlockingReason"), ("old_domain", "OldDomain")):
        value = getattr(args, flag)
        if value:
            query[param] = value
    if args.domain_aliases:
        query["DomainAliases"] = ",".join(args.domain_aliases)
    if args.sponsorships:
        query["Sponsorships"] = ",".join(args.sponsorships)
    if args.disk_quota:
        quota = parse_bytes(args.disk_quota)
        if quota > 0:
            query["DiskQuota"] = str(quota)
    for flag, param in (("blocked", "Blocked"), ("onboarding_finished", "OnboardingFinished"),
                        ("deleting", "Deleting")):
        value = getattr(args, flag)
        if value is not None:
            query[param] = "true" if value else "false"
    # §1.5: MagicLink is always sent.
    query["MagicLink"] = "true" if args.magic_link else "false"
    _, body = client.admin_call("PATCH", "/instances/" + quote(args.domain, safe=""), query)
    print(go_json(client_instance(json.loads(body)["data"]), indent=True))
    return 0


def cmd_instances_set_disk_quota(args, client: Client) -> int:
    if not args.domain or args.quota is None:
        return usage(args, 0)  # cmd.Usage(): exit 0
    quota = parse_bytes(args.quota)
    client.admin_call("PATCH", "/instances/" + quote(args.domain, safe=""),
                      {"DiskQuota": str(quota if quota else -1)})
    return 0


def cmd_instances_destroy(args, client: Client) -> int:
    if os.environ.get("COZY_DISABLE_INSTANCES_ADD_RM"):  # the words of rmInstanceCmd, "add" included
        raise CliError(f"Sorry, instances add is disabled: {os.environ['COZY_DISABLE_INSTANCES_ADD_RM']}")
    if not args.domain:
        return usage(args, 0)  # cmd.Usage(): exit 0
    if not args.force:
        confirm_domain("remove", args.domain)
    client.admin_call("DELETE", "/instances/" + quote(args.domain, safe=""))
    print(f"Instance for domain {args.domain} has been destroyed with success")
    return 0


def cmd_instances_token(audience: str, subject_from_args: bool = False):
    def run(args, client: Client) -> int:
        if not args.domain or (not args.scopes if audience == "cli" else not args.slug):
            return usage(args, 0)  # cmd.Usage(): exit 0
        if audience == "cli":
            scopes, subject = args.scopes, ""
        else:
            scopes, subject = [], args.slug
        query = {"Domain": args.domain, "Audience": audience, "Scope": " ".join(scopes), "Subject": subject}
        if getattr(args, "expire", None):
            query["Expire"] = args.expire
        _, body = client.admin_call("POST", "/instances/token", query)
        print(body.decode().strip())
        return 0

    return run


def cmd_instances_count(args, client: Client) -> int:
    _, body = client.admin_call("GET", "/instances/count")
    count = json.loads(body)["count"]
    print(f"{count} instance" + ("" if count == 1 else "s"))
    return 0


def cmd_instances_show_db_prefix(args, client: Client) -> int:
    if not args.domain:
        return usage(args, 0)  # cmd.Usage(): exit 0
    _, body = client.admin_call("GET", "/instances/" + quote(args.domain, safe=""))
    attrs = json.loads(body)["data"]["attributes"]
    print(db_prefix(attrs))
    if attrs.get("couch_cluster"):
        print(f"couch_cluster: {attrs['couch_cluster']}")
    return 0





def _domain_flag(args) -> str:
    """``MarkFlagRequired("domain")``: cobra refuses the command without the flag."""
    if args.flag_domain is None:
        raise CliError('required flag(s) "domain" not set')
    return args.flag_domain


def cmd_instances_export(args, client: Client) -> int:
    """``exportCmd`` / ``AdminClient.Export``: with ``--path``, wait for the export on the admin realtime
    socket, then download each part as ``<domain> - partNNN.zip`` (0600, an existing file replaced)."""
    domain = _domain_flag(args)
    if not valid_domain(domain):
        raise CliError(f"Invalid domain: {domain}")
    download = bool(args.path)
    _, body = client.admin_call("POST", "/instances/" + quote(domain, safe="") + "/export",
                                {"admin-req": "true" if download else "false"})
    if not download:
        return 0
    channel = client.realtime(["io.cozy.exports"])
    try:
        json.loads(body)
        while True:
            try:
                event = channel.receive()
            except (OSError, EOFError, ValueError) as error:
                raise CliError(f"realtime: {error}") from None
            if event.get("event") == "error":
                raise CliError(f"realtime: {event.get('payload', {}).get('title')}")
            payload = event.get("payload") or {}
            if event.get("event") != "UPDATED" or payload.get("type") != "io.cozy.exports":
                continue
            doc = payload.get("doc") or {}
            if doc.get("domain") != domain:
                continue
            if doc.get("state") == "error":
                raise CliError(f"Failed to export instance: {doc.get('error', '')}")
            if doc.get("state") != "done":
                continue
            cursors = ["", *(doc.get("parts_cursors") or [])]
            for number, cursor in enumerate(cursors):
                _, data = client.admin_call("GET", f"/instances/{quote(domain, safe='')}/exports/{doc['_id']}/data",
                                            {"cursor": cursor})
                filename = f"{domain} - part{number:03d}.zip"
                sys.stdout.write(f"Exporting archive {number + 1}/{len(cursors)} ({filename})... ")
                sys.stdout.flush()
                _write_part(os.path.join(args.path, filename), data)
                print("\u2705")
            return 0
    finally:
        channel.close()


def _write_part(path: str, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        os.remove(path)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as error:
        raise CliError(go_error("open", path, error)) from None
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def cmd_instances_import(args, client: Client) -> int:
    """``importCmd``: the URL, the confirmation (unless ``--force``), then ``POST …/import`` (204)."""
    if not args.url:
        raise CliError("The URL to the exported data is missing")
    domain = _domain_flag(args)
    if not args.force:
        confirm_domain("reset", domain)
    if not valid_domain(domain):
        raise CliError(f"Invalid domain: {domain}")
    client.admin_call("POST", "/instances/" + quote(domain, safe="") + "/import", {"manifest_url": args.url[0]})
    return 0


def cmd_instances_set_passphrase(args, client: Client) -> int:
    """``updateInstancePassphraseCmd``: ``PUT /settings/passphrase`` with ``force`` and a CLI token."""
    if len(args.words) != 2:
        return usage(args, 0)
    domain, passphrase = args.words
    token = client.cli_token(domain, ["io.cozy.settings"])
    body = json.dumps({"new_passphrase": passphrase, "force": True}, separators=(",", ":")).encode()
    status, _, _ = client.public_call(domain, token, "PUT", "/settings/passphrase", body=body,
                                      content_type="application/json")
    if status == 204:
        print("Passphrase has been changed for instance ", domain)
    return 0


def cmd_instances_clean_sessions(args, client: Client) -> int:
    """``cleanSessionsCmd``: ``DELETE /instances/:domain/sessions``, silent."""
    if not args.words:
        return usage(args, 0)
    domain = args.words[0]
    if not valid_domain(domain):
        raise CliError(f"Invalid domain: {domain}")
    client.admin_call("DELETE", f"/instances/{domain}/sessions")
    return 0


def register(commands) -> None:
    inst_cmds = group(commands, ["instances", "instance"], "Manage instances of a stack")
    add = sub(inst_cmds, ["add", "create"], cmd_instances_add, "create a new instance")
    add.add_argument("domain", nargs="?")
    add.add_argument("--apps", type=_list, default=[])
    add.add_argument("--context-name")
    add.add_argument("--couch-cluster", type=int, default=-1)
    _bool(add, "dev", "deprecated")
    add.add_argument("--disk-quota")
    add.add_argument("--domain-aliases", type=_list, default=[])
    add.add_argument("--email")
    add.add_argument("--franceconnect_id")
    add.add_argument("--locale", default="en")
    _bool(add, "magic_link", "enable authentication with magic links sent by email")
    add.add_argument("--oidc_id")
    add.add_argument("--old-domain")
    add.add_argument("--passphrase", help="register the instance with this passphrase (useful for tests)")
    add.add_argument("--phone")
    add.add_argument("--public-name")
    add.add_argument("--settings")
    add.add_argument("--sponsorships", type=_list, default=[])
    add.add_argument("--swift-layout", type=int, default=-1)
    add.add_argument("--tos")
    _bool(add, "trace", "show where time is spent")
    add.add_argument("--tz")
    add.add_argument("--uuid")

    ls = sub(inst_cmds, ["ls", "list"], cmd_instances_ls, "list instances")
    _bool(ls, "available-fields", "list the fields --fields accepts")
    ls.add_argument("--fields", type=_list, default=None)
    _bool(ls, "json", "one JSON object per line")

    show = sub(inst_cmds, ["show"], cmd_instances_show, "show an instance")
    show.add_argument("domain", nargs="?")

    modify = sub(inst_cmds, ["modify"], cmd_instances_modify, "modify an instance")
    modify.add_argument("domain", nargs="?")
    _bool(modify, "blocked", "block the instance")
    modify.add_argument("--blocking-reason")
    modify.add_argument("--context-name")
    _bool(modify, "deleting", "set (or remove with =false) the deleting flag")
    modify.add_argument("--disk-quota")
    modify.add_argument("--domain-aliases", type=_list, default=[])
    modify.add_argument("--email")
    modify.add_argument("--franceconnect_id")
    modify.add_argument("--locale")
    _bool(modify, "magic_link", "magic links")
    modify.add_argument("--oidc_id")
    modify.add_argument("--old-domain")
    _bool(modify, "onboarding-finished", "force the end of the onboarding")
    modify.add_argument("--phone")
    modify.add_argument("--public-name")
    modify.add_argument("--settings")
    modify.add_argument("--sponsorships", type=_list, default=[])
    modify.add_argument("--tos")
    modify.add_argument("--tos-latest")
    modify.add_argument("--tz")
    modify.add_argument("--uuid")

    quota = sub(inst_cmds, ["set-disk-quota"], cmd_instances_set_disk_quota, "set the disk quota")
    quota.add_argument("domain", nargs="?")
    quota.add_argument("quota", nargs="?")

    destroy = sub(inst_cmds, ["destroy", "rm", "delete", "remove"], cmd_instances_destroy, "remove an instance")
    destroy.add_argument("domain", nargs="?")
    _bool(destroy, "force", "do not ask for confirmation")

    cli_token = sub(inst_cmds, ["token-cli"], cmd_instances_token("cli"), "a CLI token")
    cli_token.add_argument("domain", nargs="?")
    cli_token.add_argument("scopes", nargs="*")
    app_token = sub(inst_cmds, ["token-app"], cmd_instances_token("app"), "an app token")
    app_token.add_argument("domain", nargs="?")
    app_token.add_argument("slug", nargs="?")
    app_token.add_argument("--expire")
    sub(inst_cmds, ["count"], cmd_instances_count, "count the instances")
    export = sub(inst_cmds, ["export"], cmd_instances_export, "Export an instance")
    export.add_argument("--domain", dest="flag_domain", default=None)
    export.add_argument("--path", default="")
    imp = sub(inst_cmds, ["import"], cmd_instances_import, "Import data from an export link")
    imp.add_argument("url", nargs="*", metavar="URL")
    imp.add_argument("--domain", dest="flag_domain", default=None)
    _bool(imp, "force", "Force the import without asking for confirmation")
    passphrase = sub(inst_cmds, ["set-passphrase"], cmd_instances_set_passphrase,
                     "Change the passphrase of the instance")
    passphrase.add_argument("words", nargs="*", metavar="ARG")
    sessions = sub(inst_cmds, ["clean-sessions"], cmd_instances_clean_sessions,
                   "Remove the io.cozy.sessions and io.cozy.sessions.logins bases")
    sessions.add_argument("words", nargs="*", metavar="ARG")
    check._flags(sub(inst_cmds, ["fsck"], check.cmd_instances_fsck, "Check a vfs (deprecated: check fs)"))
    prefix = sub(inst_cmds, ["show-db-prefix"], cmd_instances_show_db_prefix, "the CouchDB prefix of an instance")
    prefix.add_argument("domain", nargs="?")

