"""``cozy-stack serve``, ``version`` and ``status`` (cozy-stack's ``cmd/serve.go``, ``cmd/version.go``,
``cmd/status.go``)."""

from __future__ import annotations

import os
import signal
import threading

from .. import VERSION, config
from .root import Client, CliError, _bool, load_config, sub


def cmd_version(args, client: Client | None) -> int:
    print(VERSION)
    return 0


def cmd_status(args, client: Client) -> int:
    status, _, _ = client._request(client.public, "GET", "/status", None, {})
    if status != 200:
        raise CliError("the HTTP server is not ready")
    print("OK, the HTTP server is ready.")
    return 0



def cmd_serve(args, client: Client | None) -> int:
    from ..admin import AdminApp
    from ..httpd import log, serve
    from ..instances import StackError
    from ..public import PublicApp
    from ..stack import Stack

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




def register(commands) -> None:
    sub(commands, ["version"], cmd_version, "Print the version number")
    sub(commands, ["status"], cmd_status, "Check if the HTTP server is running")
    serve = sub(commands, ["serve"], cmd_serve, "start the stack (foreground)")
    serve.add_argument("--subdomains", default=None, help='"nested" or "flat" (default "nested")')
    serve.add_argument("--fs-url", default=None)
    serve.add_argument("--couchdb-url", default=None)
    serve.add_argument("--log-level", default="info")
    _bool(serve, "allow-root", "allow running as root")


OFFLINE = {cmd_version, cmd_serve}
