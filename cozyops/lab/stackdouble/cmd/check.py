"""``cozy-stack check fs`` (cozy-stack's ``cmd/check.go checkFSCmd``, ``fsck``) and the deprecated
``instances fsck``.

``GET /instances/:domain/fsck?IndexIntegrity=…&FilesConsistency=…&FailFast=…`` (both flags given:
both off, i.e. every check); each line of the answer is printed; any line means exit 1 (``os.Exit(1)``,
no ``Error:`` line), none exit 0.
"""

from __future__ import annotations

import sys
from urllib.parse import quote

from .root import Client, _bool, group, sub, usage


def fsck(args, client: Client) -> int:
    if not args.args:
        return usage(args, 0)
    index, files = bool(args.index_integrity), bool(args.files_consistency)
    if index and files:
        index = files = False
    query = {"IndexIntegrity": str(index).lower(), "FilesConsistency": str(files).lower(),
             "FailFast": str(bool(args.fail_fast)).lower()}
    _, body = client.admin_call("GET", f"/instances/{quote(args.args[0], safe='')}/fsck", query)
    lines = body.decode().splitlines()
    for line in lines:
        print(line)
    return 1 if lines else 0


def cmd_instances_fsck(args, client: Client) -> int:
    print("Please use cozy-stack check fs, this command has been deprecated", file=sys.stderr)
    return fsck(args, client)


def _flags(parser) -> None:
    parser.add_argument("args", nargs="*", metavar="domain")
    _bool(parser, "index-integrity", "Check the index integrity only")
    _bool(parser, "files-consistency", "Check the files consistency only (between CouchDB and Swift)")
    _bool(parser, "fail-fast", "Stop the FSCK on the first error")


def register(commands) -> None:
    cmds = group(commands, ["check"], "A set of tools to check that instances are in the expected state.")
    _flags(sub(cmds, ["fs"], fsck, "Check a vfs"))
