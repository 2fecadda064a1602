"""The ``cozy-stack`` command line of the double (cozy-stack.md §1).

Errors print ``Error: <message>`` on stderr and exit 1, as cozy-stack's ``main.go`` does; admin
API errors render as ``<Title>: <Detail>``. Commands call the double's own admin API over HTTP
with Basic auth (empty user, the passphrase from ``COZY_ADMIN_PASSPHRASE`` or
``COZY_ADMIN_PASSWORD``, else a prompt on a terminal), and the public API with a CLI token.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import http.client
import json
import math
import os
import re
import signal
import sys
import threading
from pathlib import Path
from urllib.parse import quote, urlencode

from . import VERSION, config, secret

USER_AGENT = f"cozy-stack {VERSION} (double)"
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
BOOL_FLAGS = ("blocked", "deleting", "onboarding-finished", "magic_link", "dev", "trace", "force", "json",
              "available-fields", "all-domains", "ask-permissions", "safe", "allow-root")


class CliError(Exception):
    pass


# --- sizes, as go-humanize does them
def parse_bytes(text: str) -> int:
    """humanize.ParseBytes: ``5GB`` = 5 000 000 000, ``5GiB`` = 5·2³⁰, plain numbers are bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", text or "")
    if not match:
        raise CliError(f'strconv.ParseFloat: parsing "{text}": invalid syntax')
    number, unit = float(match.group(1)), match.group(2).lower()
    si = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
          "p": 1e15, "pb": 1e15, "e": 1e18, "eb": 1e18}
    iec = {"ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20, "gi": 2**30, "gib": 2**30, "ti": 2**40,
           "tib": 2**40, "pi": 2**50, "pib": 2**50, "ei": 2**60, "eib": 2**60}
    factor = si.get(unit) or iec.get(unit)
    if factor is None:
        raise CliError(f"unhandled size name: {unit}")
    return int(number * factor)


def human_bytes(size: int) -> str:
    """humanize.Bytes (SI): ``5.0 GB``, ``12 GB``, ``100 B``."""
    if size < 10:
        return f"{size} B"
    sizes = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    exp = min(int(math.floor(math.log(size) / math.log(1000))), len(sizes) - 1)
    value = math.floor(size / 1000**exp * 10 + 0.5) / 10
    return f"{value:.1f} {sizes[exp]}" if value < 10 else f"{value:.0f} {sizes[exp]}"


def tabulate(rows: list[list[str]], padding: int = 2) -> str:
    """Go's tabwriter with padding 2: every cell but the last of a row is padded to its column's width."""
    widths: dict[int, int] = {}
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell))
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i] + padding) for i, cell in enumerate(row[:-1])]
        lines.append("".join(cells) + (row[-1] if row else ""))
    return "".join(line + "\n" for line in lines)


# --- HTTP clients
class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        cfg = load_config(args, client=True)
        self.admin = config.scheme_host(cfg.admin_host, cfg.admin_port)
        self.public = config.scheme_host(cfg.host, cfg.port)
        self._password: str | None = None

    def password(self) -> str:
        if self._password is None:
            value = os.environ.get("COZY_ADMIN_PASSPHRASE") or os.environ.get("COZY_ADMIN_PASSWORD")
            if not value:
                if not os.isatty(0):
                    raise CliError("Could not get password from standard input: inappropriate ioctl for device")
                sys.stdout.write("Password:")
                sys.stdout.flush()
                value = getpass.getpass(prompt="")
            self._password = value
        return self._password

    def _request(self, where: tuple[str, str, int], method: str, path: str, query: dict | None, headers: dict,
                 body: bytes | None = None) -> tuple[int, dict, bytes]:
        scheme, host, port = where
        target = path + ("?" + urlencode(query, quote_via=quote) if query else "")
        conn_class = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        conn = conn_class(host, port, timeout=120)
        shown = f"{scheme}://{host}:{port}{path}"
        try:
            conn.request(method, target, body=body, headers={"User-Agent": USER_AGENT, **headers})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        except OSError as error:
            reason = error.strerror or str(error)
            raise CliError(f'{method.capitalize()} "{shown}": dial tcp {host}:{port}: connect: {reason.lower()}') \
                from None
        finally:
            conn.close()

    def admin_call(self, method: str, path: str, query: dict | None = None) -> tuple[int, bytes]:
        auth = base64.b64encode((":" + self.password()).encode()).decode()
        status, headers, body = self._request(self.admin, method, path, query,
                                              {"Authorization": "Basic " + auth, "Accept": "application/vnd.api+json"})
        if status >= 400:
            raise CliError(render_error(status, headers, body))
        return status, body

    def token(self, domain: str, audience: str, scopes: list[str], subject: str) -> str:
        _, body = self.admin_call("POST", "/instances/token", {"Domain": domain, "Audience": audience,
                                                               "Scope": " ".join(scopes), "Subject": subject})
        return body.decode().strip()

    def public_call(self, domain: str, token: str, method: str, path: str, query: dict | None = None,
                    accept: str = "application/vnd.api+json") -> tuple[int, dict, bytes]:
        status, headers, body = self._request(self.public, method, path, query,
                                              {"Host": domain, "Authorization": "Bearer " + token, "Accept": accept})
        if status >= 400:
            raise CliError(render_error(status, headers, body))
        return status, headers, body


STATUS_TEXT = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
               409: "Conflict", 412: "Precondition Failed", 413: "Request Entity Too Large",
               422: "Unprocessable Entity", 500: "Internal Server Error", 502: "Bad Gateway",
               503: "Service Unavailable"}


def render_error(status: int, headers: dict, body: bytes) -> str:
    """JSON:API errors as ``<Title>: <Detail>`` of the first error; other bodies after the status text."""
    text = body.decode(errors="replace").strip()
    try:
        data = json.loads(text)
        if isinstance(data, dict) and data.get("errors"):
            first = data["errors"][0]
            return f"{first.get('title')}: {first.get('detail')}"
        if isinstance(data, dict) and "error" in data:
            text = str(data["error"])
    except ValueError:
        pass
    return f"{STATUS_TEXT.get(status, str(status))}: {text}"


def load_config(args: argparse.Namespace, client: bool = False) -> config.Config:
    overrides = {"host": args.host, "port": args.port, "admin_host": args.admin_host, "admin_port": args.admin_port}
    if not client:
        overrides.update({"subdomains": getattr(args, "subdomains", None), "fs_url": getattr(args, "fs_url", None),
                          "couchdb_url": getattr(args, "couchdb_url", None)})
    try:
        return config.load(args.config, overrides)
    except config.ConfigError as error:
        raise CliError(str(error)) from None


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


def valid_domain(domain: str) -> bool:
    return not any(c in domain for c in " /?#@\t\r\n")


def confirm(question: str, domain: str) -> None:
    sys.stdout.write(question)
    sys.stdout.flush()
    answer = sys.stdin.readline()
    if answer.strip() != domain:
        raise CliError("Aborted")


# --- commands
def cmd_instances_add(args, client: Client) -> int:
    if os.environ.get("COZY_DISABLE_INSTANCES_ADD_RM"):
        raise CliError(f"Sorry, instances add is disabled: {os.environ['COZY_DISABLE_INSTANCES_ADD_RM']}")
    if not args.domain:
        return usage(args)
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
            print(json.dumps(client_attributes(resource["attributes"])))
        return 0
    rows = []
    for resource in resources:
        attrs = resource["attributes"]
        if args.fields:
            row = []
            for name in args.fields:
                value = db_prefix(attrs) if name == "db_prefix" else client_attributes(attrs).get(name)
                row.append(_go_value(value))
            rows.append(row)
            continue
        quota = int(attrs.get("disk_quota") or 0)
        state = "onboarded" if attrs.get("onboarding_finished") else (
            "onboarding" if attrs.get("register_token") else "pending")
        rows.append([attrs["domain"], attrs.get("locale", ""), human_bytes(quota) if quota else "unlimited", state,
                     f"v{attrs.get('indexes_version', 0)}", attrs.get("prefix", ""), db_prefix(attrs)])
    sys.stdout.write(tabulate(rows))
    return 0


def _go_value(value) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(str(v) for v in value) + "]"
    return str(value)


def cmd_instances_show(args, client: Client) -> int:
    _, body = client.admin_call("GET", "/instances/" + quote(args.domain, safe=""))
    print(json.dumps(client_instance(json.loads(body)["data"]), indent="\t"))
    return 0


def cmd_instances_modify(args, client: Client) -> int:
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
    print(json.dumps(client_instance(json.loads(body)["data"]), indent="\t"))
    return 0


def cmd_instances_set_disk_quota(args, client: Client) -> int:
    quota = parse_bytes(args.quota)
    client.admin_call("PATCH", "/instances/" + quote(args.domain, safe=""),
                      {"DiskQuota": str(quota if quota else -1)})
    return 0


def cmd_instances_destroy(args, client: Client) -> int:
    if os.environ.get("COZY_DISABLE_INSTANCES_ADD_RM"):
        raise CliError(f"Sorry, instances rm is disabled: {os.environ['COZY_DISABLE_INSTANCES_ADD_RM']}")
    if not args.force:
        confirm(f"Are you sure you want to remove instance for domain {args.domain}?\n"
                "All data associated with this domain will be permanently lost.\n"
                "Type again the domain to confirm: ", args.domain)
    client.admin_call("DELETE", "/instances/" + quote(args.domain, safe=""))
    print(f"Instance for domain {args.domain} has been destroyed with success")
    return 0


def cmd_instances_token(audience: str, subject_from_args: bool = False):
    def run(args, client: Client) -> int:
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
    _, body = client.admin_call("GET", "/instances/" + quote(args.domain, safe=""))
    attrs = json.loads(body)["data"]["attributes"]
    print(db_prefix(attrs))
    if attrs.get("couch_cluster"):
        print(f"couch_cluster: {attrs['couch_cluster']}")
    return 0


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


def cmd_version(args, client: Client | None) -> int:
    print(VERSION)
    return 0


def cmd_status(args, client: Client) -> int:
    status, _, _ = client._request(client.public, "GET", "/status", None, {})
    if status != 200:
        raise CliError("the HTTP server is not ready")
    print("OK, the HTTP server is ready.")
    return 0


def cmd_config_passwd(args, client: Client | None) -> int:
    """§1.12: write the scrypt hash of the admin passphrase, mode 0440."""
    target = Path(args.filepath)
    if target.is_dir():
        target = target / config.DEFAULT_SECRET_FILENAME
    passphrase = os.environ.get("COZY_ADMIN_PASSPHRASE")
    if not passphrase:
        if not os.isatty(0):
            raise CliError("Could not get passphrase from standard input: inappropriate ioctl for device")
        first = getpass.getpass("Passphrase:", stream=sys.stderr)
        again = getpass.getpass("Confirmation:", stream=sys.stderr)
        if first != again:
            raise CliError("Passphrase and confirmation do not match")
        passphrase = first
    print(f"Hashed passphrase will be written in {target}", file=sys.stderr)
    hashed = secret.hash_passphrase(passphrase)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o440)
        try:
            os.fchmod(fd, 0o440)
            os.write(fd, hashed.encode())
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise CliError(f"open {target}: {error.strerror.lower()}") from None
    return 0


def cmd_serve(args, client: Client | None) -> int:
    from .admin import AdminApp
    from .httpd import log, serve
    from .instances import StackError
    from .public import PublicApp
    from .stack import Stack

    if os.geteuid() == 0 and not args.allow_root:
        raise CliError("Running cozy-stack as root is not recommended: use --allow-root to do it anyway")
    cfg = load_config(args)
    try:
        cfg.fs_root.mkdir(parents=True, exist_ok=True)
    except (OSError, config.ConfigError) as error:
        raise CliError(f"fs.url: {error}") from None
    stack = Stack(cfg)
    try:
        stack.wait_for_couch()
    except StackError as error:
        raise CliError(f"Could not reach CouchDB: {error.detail}") from None
    servers = []
    for app, host, port in ((AdminApp(stack), cfg.admin_host, cfg.admin_port),
                            (PublicApp(stack), cfg.host, cfg.port)):
        addresses = config.listen_addresses(host)
        bound = 0
        for address in addresses:
            try:
                servers.append(serve(app, address, port))
                bound += 1
            except OSError as error:
                if len(addresses) == 1 or (bound == 0 and address == addresses[-1]):
                    raise CliError(f"listen tcp {address}:{port}: {error.strerror.lower()}") from None
        log(f"[serve] {app.name} API on {host}:{port}")
    log(f"[serve] cozy-stack double {VERSION}: config {cfg.file or '(none)'}, subdomains {cfg.subdomains}, "
        f"fs {cfg.fs_root}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    for server in servers:
        server.shutdown()
        server.server_close()
    log("[serve] stopped")
    return 0


# --- the parser
class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # cobra prints "Error: …" and the usage, exit 1
        sys.stderr.write(f"Error: {message}\n")
        self.print_usage(sys.stderr)
        raise SystemExit(1)


def usage(args) -> int:
    args.parser.print_usage(sys.stderr)
    return 1


def _globals(parser: argparse.ArgumentParser, root: bool = False) -> None:
    """The flags every command inherits; a sub-command's own copy does not reset what was given before it."""
    default = None if root else argparse.SUPPRESS
    g = parser.add_argument_group("global flags")
    g.add_argument("--admin-host", default=default, help='administration server host (default "localhost")')
    g.add_argument("--admin-port", type=int, default=default, help="administration server port (default 6060)")
    g.add_argument("-c", "--config", default=default, help="configuration file (default \"$HOME/.cozy.yaml\")")
    g.add_argument("--host", default=default, help='server host (default "localhost")')
    g.add_argument("-p", "--port", type=int, default=default, help="server port (default 8080)")


def _bool(parser, name: str, help: str) -> None:  # noqa: A002
    dest = name.replace("-", "_")
    parser.add_argument(f"--{name}", dest=dest, action="store_true", default=None, help=help)
    parser.add_argument(f"--no-{name}", dest=dest, action="store_false", help=argparse.SUPPRESS)


def _list(value: str) -> list[str]:
    return [v for v in value.split(",") if v]


def build_parser() -> argparse.ArgumentParser:
    root = Parser(prog="cozy-stack", description="cozy-stack (test double): the subset cozyops uses")
    _globals(root, root=True)
    commands = root.add_subparsers(dest="command", parser_class=Parser, metavar="COMMAND")

    def sub(group, names: list[str], func, help: str):  # noqa: A002
        parser = group.add_parser(names[0], aliases=names[1:], help=help)
        _globals(parser)
        parser.set_defaults(func=func, parser=parser)
        return parser

    inst = commands.add_parser("instances", aliases=["instance"], help="manage instances")
    _globals(inst)
    inst_cmds = inst.add_subparsers(dest="subcommand", parser_class=Parser, metavar="SUBCOMMAND")
    inst.set_defaults(func=None, parser=inst)

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
    show.add_argument("domain")

    modify = sub(inst_cmds, ["modify"], cmd_instances_modify, "modify an instance")
    modify.add_argument("domain")
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
    quota.add_argument("domain")
    quota.add_argument("quota")

    destroy = sub(inst_cmds, ["destroy", "rm", "delete", "remove"], cmd_instances_destroy, "remove an instance")
    destroy.add_argument("domain")
    _bool(destroy, "force", "do not ask for confirmation")

    cli_token = sub(inst_cmds, ["token-cli"], cmd_instances_token("cli"), "a CLI token")
    cli_token.add_argument("domain")
    cli_token.add_argument("scopes", nargs="+")
    app_token = sub(inst_cmds, ["token-app"], cmd_instances_token("app"), "an app token")
    app_token.add_argument("domain")
    app_token.add_argument("slug")
    app_token.add_argument("--expire")
    sub(inst_cmds, ["count"], cmd_instances_count, "count the instances")
    prefix = sub(inst_cmds, ["show-db-prefix"], cmd_instances_show_db_prefix, "the CouchDB prefix of an instance")
    prefix.add_argument("domain")

    apps = commands.add_parser("apps", aliases=["app", "webapps", "webapp"], help="manage webapps")
    _globals(apps)
    apps.set_defaults(func=None, parser=apps)
    apps_cmds = apps.add_subparsers(dest="subcommand", parser_class=Parser, metavar="SUBCOMMAND")
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

    sub(commands, ["version"], cmd_version, "print the version")
    sub(commands, ["status"], cmd_status, "check the HTTP server")
    cfg = commands.add_parser("config", help="configuration commands")
    _globals(cfg)
    cfg.set_defaults(func=None, parser=cfg)
    cfg_cmds = cfg.add_subparsers(dest="subcommand", parser_class=Parser, metavar="SUBCOMMAND")
    passwd = sub(cfg_cmds, ["passwd", "password", "passphrase", "pass"], cmd_config_passwd,
                 "write the hash of the admin passphrase")
    passwd.add_argument("filepath")

    serve = sub(commands, ["serve"], cmd_serve, "start the stack (foreground)")
    serve.add_argument("--subdomains", default=None, help='"nested" or "flat" (default "nested")')
    serve.add_argument("--fs-url", default=None)
    serve.add_argument("--couchdb-url", default=None)
    serve.add_argument("--log-level", default="info")
    _bool(serve, "allow-root", "allow running as root")
    return root


def _normalise(argv: list[str]) -> list[str]:
    """cobra's ``--flag=false`` for boolean flags."""
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if eq and name.startswith("--") and name[2:] in BOOL_FLAGS:
            out.append(name if value.lower() in ("1", "t", "true") else "--no-" + name[2:])
        else:
            out.append(arg)
    return out


NO_CLIENT = {cmd_version, cmd_config_passwd, cmd_serve}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_normalise(list(sys.argv[1:] if argv is None else argv)))
    func = getattr(args, "func", None)
    if func is None:
        (getattr(args, "parser", None) or parser).print_help(sys.stderr)
        return 1 if getattr(args, "command", None) is None or getattr(args, "subcommand", None) else 0
    try:
        client = None if func in NO_CLIENT else Client(args)
        return func(args, client)
    except CliError as error:
        sys.stderr.write(f"Error: {error}\n")
        return 1
    except KeyboardInterrupt:
        return 130
