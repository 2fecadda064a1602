"""``GET /instances/:domain/fsck`` (cozy-stack's ``web/instances/checks.go fsckHandler``,
``model/vfs/vfsafero/fsck.go``, ``model/vfs/fsck.go``) for the double's file-system VFS.

One JSON object a line, each an ``FsckLog``: ``{"type", "file_doc"|"dir_doc", "is_file",
"is_version", …}``; nothing at all when the instance is sound. ``IndexIntegrity=true`` checks the
index only, ``FilesConsistency=true`` the index against the disk only, neither both (``Fsck``);
``FailFast`` stops at the first problem. The tree entries are the CouchDB documents with ``is_dir``,
``is_orphan`` and ``has_cycle`` (``TreeFile``), without ``metadata`` (``fsckHandler`` drops it).
The index checks the double makes: ``index_missing_root``, ``index_missing_trash``,
``index_orphan_tree``, ``index_bad_fullpath``; the files checks: ``index_missing``, ``type_mismatch``,
``content_mismatch`` (size and MD5), ``filesystem_missing``.
"""

from __future__ import annotations

import base64
import hashlib
import os

from .vfs import ROOT, TRASH

SKIPPED_DIRS = ("/.cozy_apps", "/.cozy_konnectors", "/.thumbs")  # vfs.WebappsDirName, KonnectorsDirName, ThumbsDirName


class FailFast(Exception):
    pass


def _tree_file(doc: dict, orphan: bool = False) -> dict:
    entry = {k: v for k, v in doc.items() if k != "metadata"}
    entry.update({"is_dir": doc.get("type") == "directory", "is_orphan": orphan, "has_cycle": False})
    return entry


def _info_doc(path: str, disk, is_dir: bool) -> dict:
    """``fileInfosToFileDoc`` / ``fileInfosToDirDoc``: what the disk tells of an unindexed entry."""
    doc = {"type": "directory" if is_dir else "file", "name": os.path.basename(path), "path": path}
    if not is_dir:
        doc["size"] = str(disk.stat().st_size)
    return _tree_file(doc)


def run(vfs, index_only: bool, files_only: bool, fail_fast: bool) -> list[dict]:
    logs: list[dict] = []

    def add(log: dict) -> None:
        logs.append({"is_file": False, "is_version": False, **log})
        if fail_fast:
            raise FailFast

    docs = {d["_id"]: d for d in vfs.couch.all_docs(vfs.db) if not d["_id"].startswith("_design/")}
    try:
        entries = _paths(docs, add if not files_only else (lambda log: None))
        if not index_only:
            _check_files(vfs, entries, add)
    except FailFast:
        pass
    return logs


def _paths(docs: dict, add) -> dict[str, dict]:
    """``BuildTree`` + ``CheckTreeIntegrity``: the full path of every document reachable from the root."""
    if ROOT not in docs:
        add({"type": "index_missing_root"})
    if TRASH not in docs:
        add({"type": "index_missing_trash"})
    entries: dict[str, dict] = {}
    for doc in docs.values():
        if doc["_id"] == ROOT:
            continue
        parent = docs.get(doc.get("dir_id", ""))
        is_file = doc.get("type") == "file"
        if parent is None:
            add({"type": "index_orphan_tree", "is_file": is_file,
                 ("file_doc" if is_file else "dir_doc"): _tree_file(doc, orphan=True)})
            continue
        expected = parent.get("path", "").rstrip("/") + "/" + doc.get("name", "")
        if not is_file and doc.get("path") != expected:
            add({"type": "index_bad_fullpath", "dir_doc": _tree_file(doc), "expected_fullpath": expected})
        entries[expected] = doc
    return entries


def _check_files(vfs, entries: dict[str, dict], add) -> None:
    seen = set()
    for current, dirs, files in os.walk(vfs.disk):
        rel_dir = "/" + os.path.relpath(current, vfs.disk).replace(os.sep, "/").lstrip("./")
        rel_dir = "/" if rel_dir == "/" else rel_dir.rstrip("/")
        dirs[:] = sorted(d for d in dirs if (rel_dir.rstrip("/") + "/" + d) not in SKIPPED_DIRS)
        for name in sorted(dirs) + sorted(files):
            path = rel_dir.rstrip("/") + "/" + name
            disk = vfs.disk / path.lstrip("/")
            is_dir = disk.is_dir()
            doc = entries.get(path)
            seen.add(path)
            if doc is None:
                add({"type": "index_missing", "is_file": True, "file_doc": _info_doc(path, disk, is_dir)})
                continue
            indexed_dir = doc.get("type") == "directory"
            if indexed_dir != is_dir:
                if indexed_dir:
                    add({"type": "type_mismatch", "is_file": True, "file_doc": _tree_file(doc),
                         "dir_doc": _info_doc(path, disk, True)})
                else:
                    add({"type": "type_mismatch", "is_file": False, "dir_doc": _tree_file(doc),
                         "file_doc": _info_doc(path, disk, False)})
                continue
            if not is_dir:
                raw = disk.read_bytes()
                md5 = hashlib.md5(raw).digest()
                indexed = base64.b64decode(doc.get("md5sum") or "")
                if md5 != indexed or len(raw) != int(doc.get("size") or 0):
                    add({"type": "content_mismatch", "is_file": True, "file_doc": _tree_file(doc),
                         "content_mismatch": {"size_file": len(raw), "size_index": int(doc.get("size") or 0),
                                              "md5sum_file": base64.b64encode(md5).decode(),
                                              "md5sum_index": doc.get("md5sum")}})
    for path, doc in sorted(entries.items()):
        if path not in seen:
            is_file = doc.get("type") == "file"
            add({"type": "filesystem_missing", "is_file": is_file,
                 ("file_doc" if is_file else "dir_doc"): _tree_file(doc)})


