"""What every command shares (cozy-stack's ``cmd/root.go``, ``client/request``): the admin and public
HTTP clients, errors, go-humanize sizes, tabwriter, and the parser's global flags.

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
import sys
from urllib.parse import quote, urlencode

from .. import VERSION, config

USER_AGENT = f"cozy-stack {VERSION} (double)"
BOOL_FLAGS = ("blocked", "deleting", "onboarding-finished", "magic_link", "dev", "trace", "force", "json", "trash",
              "index-integrity", "files-consistency", "fail-fast",
              "available-fields", "all-domains", "ask-permissions", "safe", "allow-root")


class CliError(Exception):
    pass


class ExitError(CliError):
    """Printed as it is (no ``Error:``), exit 1: the commands that call ``os.Exit(1)`` themselves."""


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

    def cli_token(self, domain: str, scopes: list[str]) -> str:
        """``newClient``: a CLI token, or ``Could not generate access to domain D`` and the error, exit 1."""
        try:
            return self.token(domain, "cli", scopes, "CLI")
        except CliError as error:
            raise ExitError(f"Could not generate access to domain {domain}\n{error}") from None

    def realtime(self, doctypes: list[str]):
        """``RealtimeClient`` on the admin API: Basic auth, then one SUBSCRIBE per doctype."""
        from ..realtime import Client as Socket

        auth = base64.b64encode((":" + self.password()).encode()).decode()
        _, host, port = self.admin
        try:
            channel = Socket(host, port, "Basic " + auth)
            for doctype in doctypes:
                channel.subscribe(doctype)
        except OSError as error:
            raise CliError(f"realtime: {error}") from None
        return channel

    def public_call(self, domain: str, token: str, method: str, path: str, query: dict | None = None,
                    accept: str = "application/vnd.api+json", body: bytes | None = None,
                    content_type: str | None = None) -> tuple[int, dict, bytes]:
        headers = {"Host": domain, "Authorization": "Bearer " + token, "Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        status, headers, body = self._request(self.public, method, path, query, headers, body)
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


def valid_domain(domain: str) -> bool:
    return not any(c in domain for c in " /?#@\t\r\n")


def confirm_domain(action: str, domain: str) -> None:
    """``confirmDomain``: the question, a line read (none: ``EOF``), compared lower-cased; a blank line after."""
    sys.stdout.write(f"Are you sure you want to {action} instance for domain {domain}?\n"
                     "All data associated with this domain will be permanently lost.\n"
                     "Type again the domain to confirm: ")
    sys.stdout.flush()
    answer = sys.stdin.readline()
    if not answer.endswith("\n"):
        raise CliError("EOF")
    if answer.strip().lower() != domain:
        raise CliError("Aborted")
    print()


_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_json(value, indent: bool = False) -> str:
    """``json.Marshal`` (compact) or ``json.MarshalIndent(v, "", "  ")``, with Go's HTML-safe escapes."""
    if indent:
        text = json.dumps(value, indent="  ", separators=(",", ": "), ensure_ascii=False)
    else:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in _GO_ESCAPES.items():
        text = text.replace(char, escaped)
    return text


def go_value(value) -> str:
    """``fmt``'s ``%v`` of a decoded JSON value: ``<nil>``, ``true``, ``[a b]``, ``map[k:v]``, ``1e+06``."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_value(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, (int, float)):
        return go_float(float(value))
    return str(value)


def go_float(number: float) -> str:
    """``%v`` of a float64 (``strconv`` 'g', shortest): ``%e`` when the exponent is below -4 or 6 and more."""
    if number == 0:
        return "0"
    exponent = int(f"{number:e}".partition("e")[2])
    short = repr(abs(number))  # Python's repr is the shortest round-tripping form too
    if -4 <= exponent < 6:
        text = short[:-2] if short.endswith(".0") else short
    else:
        if "e" in short:
            head = short.partition("e")[0]
        else:
            head = short.replace(".", "").strip("0") or "0"
            head = head[0] + ("." + head[1:] if len(head) > 1 else "")
        head = head[:-2] if head.endswith(".0") else head
        text = f"{head}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    return ("-" if number < 0 else "") + text


# --- the parser
class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # cobra prints "Error: …" and the usage, exit 1
        sys.stderr.write(f"Error: {message}\n")
        self.print_usage(sys.stderr)
        raise SystemExit(1)


def usage(args, code: int = 1) -> int:
    args.parser.print_usage(sys.stderr)
    return code


def go_error(op: str, path: str, error: OSError) -> str:
    """An ``*os.PathError`` as Go prints it: ``open /etc/x: permission denied``."""
    return f"{op} {path}: {(error.strerror or str(error)).lower()}"


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




def sub(group, names: list[str], func, help: str):  # noqa: A002
    parser = group.add_parser(names[0], aliases=names[1:], help=help)
    _globals(parser)
    parser.set_defaults(func=func, parser=parser)
    return parser


def group(commands, names: list[str], help: str):  # noqa: A002
    parser = commands.add_parser(names[0], aliases=names[1:], help=help)
    _globals(parser)
    parser.set_defaults(func=None, parser=parser)
    return parser.add_subparsers(dest="subcommand", parser_class=Parser, metavar="SUBCOMMAND")
