"""``cozy-stack files usage`` (cozy-stack's ``cmd/files.go usageFilesCmd``, ``client.AdminClient.DiskUsage``).

``GET /instances/:domain/disk-usage`` (``?include=trash`` with ``--trash``), then a line for each field
the answer has: the route omits zero fields, so the command prints only what is there. Values are
printed with Go's ``%v`` (strings as they are, numbers as float64).
"""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import quote

from .root import Client, _bool, go_value, group, sub, usage

LINES = (("files", "  Including latest version of files: {}"), ("versions", "  Including older versions of files: {}"))


def cmd_usage(args, client: Client) -> int:
    domain = args.flag_domain if args.flag_domain is not None else os.environ.get("COZY_DOMAIN", "")
    if not domain:
        print("Missing --domain flag, or COZY_DOMAIN env variable", file=sys.stderr)
        return usage(args, 0)
    _, body = client.admin_call("GET", f"/instances/{quote(domain, safe='')}/disk-usage",
                                {"include": "trash"} if args.trash else None)
    info = json.loads(body)
    print(f"Usage: {go_value(info.get('used'))}")
    for name, line in LINES:
        if name in info:
            print(line.format(go_value(info[name])))
    if args.trash and "trashed" in info:
        print(f"  Including trashed files: {go_value(info['trashed'])}")
    if "quota" in info:
        print(f"Quota: {go_value(info['quota'])}")
    if "doc_count" in info:
        print(f"Documents count: {go_value(info['doc_count'])}")
    if "versions_count" in info:
        print(f"Versions Documents count: {go_value(info['versions_count'])}")
    return 0


def register(commands) -> None:
    cmds = group(commands, ["files"], "Interact with the cozy filesystem")
    parser = sub(cmds, ["usage"], cmd_usage, "Show the usage and quota for the files of this instance")
    parser.add_argument("--domain", dest="flag_domain", default=None, help="specify the domain name of the instance")
    _bool(parser, "trash", "Include trashed files total size")
