"""A fleet's own state in ``<fleet>/.cozyops/`` (git-ignored): the run lock and the journal.

- ``lock``: one cozyops run at a time works on a fleet (a daily ``cert renew`` and a manual
  ``apply`` stay apart). The lock is an ``flock`` on the file, released when the process ends
  however it ends; the file holds the holder's PID and command, for the error message.
- ``state.db`` (SQLite, write-ahead log): the journal of operations. Every batch of DNS changes is journaled with
  its outcome; a failed one with its changes, so that an operator sees what was not applied.
  Certificates: ``certificates`` (one row per certificate name: names, serial, validity, issuer,
  directory, the CA's renewal window and when to ask for it again) and ``issuances`` (every
  certificate issued, for the weekly budget).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

from cozyops.errors import CozyopsError

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    run TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    outcome TEXT NOT NULL,
    count INTEGER NOT NULL,
    error TEXT,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS certificates (
    name TEXT PRIMARY KEY,
    domains TEXT NOT NULL,
    serial TEXT NOT NULL,
    not_before TEXT NOT NULL,
    not_after TEXT NOT NULL,
    issuer TEXT NOT NULL,
    directory TEXT NOT NULL,
    key_type TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    ari_start TEXT,
    ari_end TEXT,
    ari_next_check TEXT,
    deployed TEXT
);
CREATE TABLE IF NOT EXISTS issuances (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    directory TEXT NOT NULL,
    name TEXT NOT NULL,
    domains TEXT NOT NULL,
    renewal INTEGER NOT NULL,
    serial TEXT NOT NULL
);
"""


class LockedError(CozyopsError):
    """Another run holds the fleet's lock."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


@contextlib.contextmanager
def fleet_lock(state_dir: Path, fleet: str, command: str = "") -> Iterator[None]:
    """Hold the fleet's lock for the duration; fail at once (naming the holder) if it is taken."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            raise LockedError(f"fleet {fleet}", f"another cozyops run is working on it ({holder})",
                              "wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, {command or ' '.join(sys.argv[:3])}, since {_now()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def connect(state_dir: Path) -> sqlite3.Connection:
    """The fleet's ``state.db``, with every table."""
    state_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(state_dir / "state.db", check_same_thread=False)
    # WAL with synchronous=NORMAL: an entry survives the process crashing right after it
    # (what a journal is for) without an fsync per entry, which would cost more than the
    # UPDATE message it journals.
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    return db


class Journal:
    """The journal of operations, in ``state.db``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "state.db"
        self.db = connect(state_dir)
        self.run = f"{_now()} pid {os.getpid()}"

    def close(self) -> None:
        self.db.close()

    def record(self, kind: str, subject: str, outcome: str, count: int, error: str | None = None,
               detail: object = None) -> None:
        self.db.execute(
            "INSERT INTO journal (at, run, kind, subject, outcome, count, error, detail) VALUES (?,?,?,?,?,?,?,?)",
            (_now(), self.run, kind, subject, outcome, count, error,
             json.dumps(detail) if detail is not None else None),
        )
        self.db.commit()

    def entries(self, kind: str | None = None, outcome: str | None = None) -> list[dict]:
        query = "SELECT at, run, kind, subject, outcome, count, error, detail FROM journal"
        clauses, args = [], []
        if kind:
            clauses.append("kind = ?")
            args.append(kind)
        if outcome:
            clauses.append("outcome = ?")
            args.append(outcome)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        rows = self.db.execute(query + " ORDER BY id", args).fetchall()
        keys = ("at", "run", "kind", "subject", "outcome", "count", "error", "detail")
        return [
            {**dict(zip(keys, row, strict=True)), "detail": json.loads(row[7]) if row[7] else None} for row in rows
        ]
