"""``cozy-stack apps …`` and ``konnectors …`` (cozy-stack's ``cmd/apps.go``, ``client/apps.go``).

Read at db1163854: ``--domain`` defaults to ``COZY_DOMAIN``; without a domain a command prints
``Missing --domain flag, or COZY_DOMAIN env variable`` and its usage, and exits 0. ``--all-domains``
(install, update) runs on every instance (``foreachDomains``): one line a domain that worked, a
domain already having the app (install) or not having it (update) is skipped silently, an error is
printed as ``<domain>: <error>`` on stderr and the loop carries on; at the end, if any failed,
``Error: At least one error occurred while executing this command`` and exit 1.
"""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import quote

from .root import Client, CliError, _bool, go_json, group, sub, tabulate, usage

APPS, KONNECTORS = "io.cozy.apps", "io.cozy.konnectors"
ERR_MISSING_DOMAIN = "Missing --domain flag, or COZY_DOMAIN env variable"
ERR_ALREADY_EXISTS = "Application with same slug already exists"  # model/app/errors.go
ERR_NOT_FOUND = "Application is not installed"
ZERO_TIME = "0001-01-01T00:00:00Z"
# client.AppManifest's attributes, in the struct's order: (name, omitted when empty, the zero value).
MANIFEST_FIELDS = (
    ("name", False, ""), ("name_prefix", True, ""), ("editor", False, ""), ("icon", False, ""), ("type", True, ""),
    ("license", True, ""), ("language", True, ""), ("category", True, ""), ("vendor_link", False, None),
    ("locales", True, None), ("langs", True, None), ("platforms", True, None), ("categories", True, None),
    ("developer", True, None), ("screenshots", True, None), ("tags", True, None), ("frequency", True, ""),
    ("data_types", True, None), ("doctypes", True, None), ("fields", True, None), ("folders", True, None),
    ("messages", True, None), ("oauth", True, None), ("time_interval", True, None), ("clientSide", True, False),
    ("slug", False, ""), ("state", False, ""), ("source", False, ""), ("version", False, ""),
    ("permissions", False, None), ("available_version", True, ""), ("parameters", True, None),
    ("intents", False, None), ("routes", True, None), ("services", False, None), ("notifications", True, None),
    ("created_at", False, ZERO_TIME), ("updated_at", False, ZERO_TIME), ("error", True, ""),
)


class Skip(Exception):
    """The error ``foreachDomains``' predicate swallows (already installed, not installed)."""


def manifest_attributes(attrs: dict) -> dict:
    out = {}
    for name, omitted, zero in MANIFEST_FIELDS:
        value = attrs.get(name, zero)
        if omitted and value in (None, "", False, [], {}):
            continue
        out[name] = value
    return out


def _domain(args) -> str | None:
    domain = args.flag_domain if args.flag_domain is not None else os.environ.get("COZY_DOMAIN", "")
    if not domain:
        print(ERR_MISSING_DOMAIN, file=sys.stderr)
        return None
    return domain


def _path(doctype: str, slug: str = "") -> str:
    return ("/apps/" if doctype == APPS else "/konnectors/") + (quote(slug, safe="") if slug else "")


def _events(body: bytes) -> list[tuple[str, str]]:
    events = []
    for block in body.decode().replace("\r\n", "\n").split("\n\n"):
        name, data = "", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if name:
            events.append((name, "\n".join(data)))
    return events


def _stream(client: Client, domain: str, token: str, method: str, doctype: str, slug: str, query: dict) -> dict:
    """``readAppManifestStream``: the last event's manifest, or the ``error`` event's message."""
    _, _, body = client.public_call(domain, token, method, _path(doctype, slug), query, accept="text/event-stream")
    attrs: dict | None = None
    for name, data in _events(body):
        if name == "error":
            raise CliError(json.loads(data) if data.startswith('"') else data)
        attrs = json.loads(data)["data"]["attributes"]
    if attrs is None:
        raise CliError("No application data was sent")
    return attrs


def _get(client: Client, domain: str, token: str, doctype: str, slug: str) -> dict:
    _, _, body = client.public_call(domain, token, "GET", _path(doctype, slug))
    return json.loads(body)["data"]["attributes"]


def _foreach_domains(client: Client, work) -> int:
    _, body = client.admin_call("GET", "/instances")
    failed = False
    for resource in json.loads(body).get("data", []):
        domain = resource["attributes"]["domain"]
        try:
            work(domain)
        except Skip:
            continue
        except CliError as error:
            if type(error) is not CliError:  # ExitError: newClient stops everything
                raise
            print(f"{domain}: {error}", file=sys.stderr)
            failed = True
    if failed:
        raise CliError("At least one error occurred while executing this command")
    return 0


def _on_all_domains(client: Client, doctype: str, method: str, slug: str, query: dict, skipped: str,
                    done: str) -> int:
    """``installApp`` / ``updateApp`` with ``--all-domains``: the error ``skipped`` means nothing to do there."""
    def work(domain: str) -> None:
        token = client.cli_token(domain, [doctype])
        try:
            _stream(client, domain, token, method, doctype, slug, query)
        except CliError as error:
            if str(error) == skipped:
                raise Skip from None
            raise
        print(f"Application {done} successfully on {domain}")

    return _foreach_domains(client, work)


def _install_query(args, source: str) -> dict:
    query = {"Source": source, "Deactivated": "true" if getattr(args, "ask_permissions", False) else "false"}
    if getattr(args, "parameters", None):
        query["Parameters"] = json.dumps(json.loads(args.parameters), separators=(",", ":"))
    return query


def install(doctype: str):
    def run(args, client: Client) -> int:
        if not args.args:
            return usage(args, 0)
        slug = args.args[0]
        source = args.args[1] if len(args.args) > 1 else f"registry://{slug}/stable"
        if args.all_domains:
            return _on_all_domains(client, doctype, "POST", slug, _install_query(args, source), ERR_ALREADY_EXISTS,
                                   "installed")
        domain = _domain(args)
        if domain is None:
            return usage(args, 0)
        token = client.cli_token(domain, [doctype])
        attrs = _stream(client, domain, token, "POST", doctype, slug, _install_query(args, source))
        print(f"{slug} ({attrs.get('version')}) has been installed on {domain}")
        return 0
    return run


def update(doctype: str):
    def run(args, client: Client) -> int:
        if not args.args or len(args.args) > 2:
            return usage(args, 0)
        slug = args.args[0]
        query = {"Source": args.args[1] if len(args.args) > 1 else "",
                 "PermissionsAcked": "false" if args.safe else "true"}
        if getattr(args, "parameters", None):
            query["Parameters"] = json.dumps(json.loads(args.parameters), separators=(",", ":"))
        if args.all_domains:
            return _on_all_domains(client, doctype, "PUT", slug, query, ERR_NOT_FOUND, "updated")
        domain = _domain(args)
        if domain is None:
            return usage(args, 0)
        token = client.cli_token(domain, [doctype])
        before = _get(client, domain, token, doctype, slug)
        after = _stream(client, domain, token, "PUT", doctype, slug, query)
        old, new = before.get("version"), after.get("version")
        message = "{} is already up-to-date at {}"
        if _more_recent(new, old):
            message = "{} has been upgraded to {}"
        elif _more_recent(old, new):
            message = "{} has been downgraded to {}"
        print(message.format(slug, new))
        return 0
    return run


def _more_recent(a: str | None, b: str | None) -> bool:
    """``app.IsMoreRecent(b, a)``: is ``a`` a later version than ``b`` (a release after its pre-releases)."""
    def key(v):
        main, _, pre = (v or "0").partition("-")
        return tuple(int(x) if x.isdigit() else 0 for x in main.split(".")), pre == "", pre

    return key(a) > key(b)


def uninstall(doctype: str):
    def run(args, client: Client) -> int:
        if len(args.args) != 1:
            return usage(args, 0)
        domain = _domain(args)
        if domain is None:
            return usage(args, 0)
        token = client.cli_token(domain, [doctype])
        _, _, body = client.public_call(domain, token, "DELETE", _path(doctype, args.args[0]))
        print(f"{json.loads(body)['data']['attributes'].get('slug')} has been uninstalled")
        return 0
    return run


def ls(doctype: str):
    def run(args, client: Client) -> int:
        domain = _domain(args)
        if domain is None:
            return usage(args, 0)
        token = client.cli_token(domain, [doctype])
        _, _, body = client.public_call(domain, token, "GET", _path(doctype))
        rows = [[a.get("slug", ""), a.get("source", ""), a.get("version", ""), a.get("state", "")]
                for a in (r["attributes"] for r in json.loads(body).get("data", []))]
        sys.stdout.write(tabulate(rows))
        return 0
    return run


def show(doctype: str):
    def run(args, client: Client) -> int:
        domain = _domain(args)
        if domain is None:
            return usage(args, 0)
        if not args.args:
            return usage(args, 0)
        token = client.cli_token(domain, [doctype])
        print(go_json(manifest_attributes(_get(client, domain, token, doctype, args.args[0])), indent=True))
        return 0
    return run


def register(commands) -> None:
    for names, doctype, what in ((["apps"], APPS, "Interact with the applications"),
                                 (["konnectors"], KONNECTORS, "Interact with the konnectors")):
        cmds = group(commands, names, what)
        for sub_names, make, help_text in ((["install"], install, "Install"), (["update", "upgrade"], update, "Update"),
                                           (["uninstall", "rm"], uninstall, "Uninstall"), (["ls"], ls, "List"),
                                           (["show"], show, "Show the attributes")):
            parser = sub(cmds, sub_names, make(doctype), help_text)
            parser.add_argument("args", nargs="*", metavar="ARG")
            parser.add_argument("--domain", dest="flag_domain", default=None,
                                help="specify the domain name of the instance")
            _bool(parser, "all-domains", "work on all domains iteratively")
            if make is install and doctype == APPS:
                _bool(parser, "ask-permissions", "do not activate the application after installation")
            if make is update:
                _bool(parser, "safe", "do not upgrade if there are blocking changes")
            if doctype == KONNECTORS:
                parser.add_argument("--parameters", default="", help="override the parameters of the konnector")
