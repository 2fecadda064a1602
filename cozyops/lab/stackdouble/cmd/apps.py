"""``cozy-stack apps …`` and ``konnectors …`` (cozy-stack's ``cmd/apps.go``, ``client/apps.go``)."""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import quote

from .root import Client, CliError, _bool, group, sub, tabulate


def _domains(args, client: Client) -> list[str]:
    if args.all_domains:
        _, body = client.admin_call("GET", "/instances")
        return [r["attributes"]["domain"] for r in json.loads(body).get("data", [])]
    domain = args.app_domain or os.environ.get("COZY_DOMAIN")
    if not domain:
        raise CliError("Missing --domain flag, or COZY_DOMAIN env variable")
    return [domain]


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


def _app_call(client: Client, domain: str, token: str, method: str, slug: str, source: str | None) -> dict:
    query = {"Deactivated": "false"}
    if source:
        query["Source"] = source
    _, _, body = client.public_call(domain, token, method, "/apps/" + quote(slug, safe=""), query,
                                    accept="text/event-stream")
    attrs: dict = {}
    for name, data in _events(body):
        if name == "error":
            raise CliError(json.loads(data) if data.startswith('"') else data)
        if name == "state":
            attrs = json.loads(data)["data"]["attributes"]
    return attrs


def _installed_apps(client: Client, domain: str, token: str) -> dict:
    _, _, body = client.public_call(domain, token, "GET", "/apps/")
    return {a["attributes"]["slug"]: a["attributes"] for a in json.loads(body).get("data", [])}


def cmd_apps_install(args, client: Client) -> int:
    for domain in _domains(args, client):
        token = client.token(domain, "cli", ["io.cozy.apps"], "CLI")
        if args.all_domains and args.slug in _installed_apps(client, domain, token):
            continue
        attrs = _app_call(client, domain, token, "POST", args.slug, args.source)
        if args.all_domains:
            print(f"Application installed successfully on {domain}")
        else:
            print(f"{args.slug} ({attrs.get('version')}) has been installed on {domain}")
    return 0


def cmd_apps_update(args, client: Client) -> int:
    for domain in _domains(args, client):
        token = client.token(domain, "cli", ["io.cozy.apps"], "CLI")
        before = _installed_apps(client, domain, token).get(args.slug)
        if before is None and args.all_domains:
            continue
        attrs = _app_call(client, domain, token, "PUT", args.slug, args.source)
        old, new = (before or {}).get("version"), attrs.get("version")
        if old == new:
            print(f"{args.slug} is already up-to-date at {new}")
        elif before is not None and _older(new, old):
            print(f"{args.slug} has been downgraded to {new}")
        else:
            print(f"{args.slug} has been upgraded to {new}")
    return 0


def _older(a: str | None, b: str | None) -> bool:
    def key(v):
        main, _, pre = (v or "0").partition("-")
        return tuple(int(x) if x.isdigit() else 0 for x in main.split(".")), pre == "", pre

    return key(a) < key(b)


def cmd_apps_ls(args, client: Client) -> int:
    domain = _domains(args, client)[0]
    token = client.token(domain, "cli", ["io.cozy.apps"], "CLI")
    rows = [[a.get("slug", ""), a.get("source", ""), a.get("version", ""), a.get("state", "")]
            for a in _installed_apps(client, domain, token).values()]
    sys.stdout.write(tabulate(rows))
    return 0




def register(commands) -> None:
    apps_cmds = group(commands, ["apps", "app", "webapps", "webapp"], "Interact with the applications")
    for names, func in ((["install"], cmd_apps_install), (["update", "upgrade"], cmd_apps_update),
                        (["ls", "list"], cmd_apps_ls)):
        parser = sub(apps_cmds, names, func, names[0] + " webapps")
        parser.add_argument("--domain", dest="app_domain", default=None)
        _bool(parser, "all-domains", "every instance")
        if func is not cmd_apps_ls:
            parser.add_argument("slug")
            parser.add_argument("source", nargs="?")
        if func is cmd_apps_install:
            _bool(parser, "ask-permissions", "ask permissions")
        if func is cmd_apps_update:
            _bool(parser, "safe", "do not upgrade when permissions change")

