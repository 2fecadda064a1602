"""A fleet's own state in ``<fleet>/.cozyops/`` (git-ignored): the run lock and the journal.

- ``lock``: one cozyops run at a time works on a fleet (a daily ``cert renew`` and a manual
  ``apply`` stay apart). The lock is an ``flock`` on the file, released when the process ends
  however it ends; the file holds the holder's PID and command, for the error message.
- ``state.db`` (SQLite, write-ahead log): the journal of operations. Every batch of DNS changes is journaled with
  its outcome; a failed one with its changes, so that an operator sees what was not applied.
  Certificates: ``certificates`` (one row per certificate name: names, serial, validity, issuer,
  directory, the CA's renewal window and when to ask for it again) and ``issuances`` (every
  certificate issued, for the weekly budget). ``challenges``: every ACME challenge TXT value a
  run publishes, journaled before it is sent and removed once it is cleaned up, so that the next
  run removes what an interrupted one left. The v2 import ledger (``v2_ledger``, ``v2_imports``).
  Long operations made of steps (an instance's move, an install): ``operations`` (one row per
  operation: its kind, subject, parameters and outcome) and ``operation_steps`` (each step done,
  with what it produced), so that a run killed between two steps continues after the last one done.

The database records its schema version (``PRAGMA user_version``). Opening one written by an
older cozyops upgrades it in place, in one transaction (a database of the first release, which
recorded no version, is version 1); one written by a newer cozyops is refused.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import sqlite3
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from cozyops.errors import CozyopsError

# Version 1: the first release (no version recorded). Kept as it was: the upgrades start from it.
SCHEMA_V1 = """
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

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS v2_ledger (
    export TEXT NOT NULL,
    domain TEXT NOT NULL,
    key TEXT NOT NULL,
    v3_id TEXT NOT NULL,
    v3_path TEXT,
    checksum TEXT,
    size INTEGER NOT NULL DEFAULT 0,
    at TEXT NOT NULL,
    PRIMARY KEY (export, domain, key)
);
CREATE INDEX IF NOT EXISTS v2_ledger_path ON v2_ledger (export, domain, v3_path);
CREATE TABLE IF NOT EXISTS v2_imports (
    export TEXT NOT NULL,
    domain TEXT NOT NULL,
    source TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT,
    PRIMARY KEY (export, domain)
);
"""

# Each upgrade takes the database from version N to N + 1 (run in one transaction with the others).
UPGRADES: dict[int, str] = {
    # 1 -> 2: the challenge journal; the v2 ledger's tables always (they were created on first
    # import); issuances.order_url: an order being finalized (serial '' until its certificate is
    # kept), counted by the budget from the moment the CA may issue; certificates.deployed goes
    # (nothing ever wrote it: deployment is checked on the servers themselves, by a TLS handshake).
    1: LEDGER_SCHEMA + """
CREATE TABLE IF NOT EXISTS challenges (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    run TEXT NOT NULL,
    zone TEXT NOT NULL,
    fqdn TEXT NOT NULL,
    value TEXT NOT NULL
);
ALTER TABLE certificates DROP COLUMN deployed;
ALTER TABLE issuances ADD COLUMN order_url TEXT;
""",
    # 2 -> 3: journaled steps of long operations (moves, installs).
    2: """
CREATE TABLE IF NOT EXISTS operations (
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    params TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT,
    outcome TEXT,
    PRIMARY KEY (kind, subject)
);
CREATE TABLE IF NOT EXISTS operation_steps (
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    step TEXT NOT NULL,
    at TEXT NOT NULL,
    result TEXT,
    PRIMARY KEY (kind, subject, step)
);
""",
    # 3 -> 4: what the fleet owns on its servers (instances it created or adopted, nginx sites)
    # with the settings last applied; the provisioning inputs of each server's last good run.
    3: """
CREATE TABLE IF NOT EXISTS owned (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    server TEXT NOT NULL,
    origin TEXT NOT NULL,
    settings TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS server_inputs (
    server TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    at TEXT NOT NULL
);
""",
}
SCHEMA_VERSION = 1 + len(UPGRADES)


class StateError(CozyopsError):
    """The fleet's state database cannot be used (written by a newer cozyops, or damaged)."""


class LockedError(CozyopsError):
    """Another run holds the fleet's lock."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


_held: dict[Path, int] = {}  # the fleet locks this process holds open to its own inner takes (`apply` provisions)
_held_guard = threading.Lock()


@contextlib.contextmanager
def fleet_lock(state_dir: Path, fleet: str, command: str = "", reentrant: bool = False) -> Iterator[None]:
    """Hold the fleet's lock for the duration; fail at once (naming the holder) if it is taken.
    Taken with ``reentrant``, the same process may take it again inside (``cozyops apply``
    provisions servers, which takes the lock itself); otherwise a second take fails too."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = (state_dir / "lock").resolve()
    with _held_guard:
        inner = path in _held
        if inner:
            _held[path] += 1
    if inner:
        try:
            yield
        finally:
            with _held_guard:
                _held[path] -= 1
        return
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
        if reentrant:
            with _held_guard:
                _held[path] = 1
        try:
            yield
        finally:
            if reentrant:
                with _held_guard:
                    _held.pop(path, None)
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _upgrade(db: sqlite3.Connection, path: Path) -> None:
    """Bring the database to ``SCHEMA_VERSION``: created whole when empty, else upgraded in place,
    every step in one transaction (a failure or a kill leaves it as it was)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise StateError(str(path), f"schema version {version} was written by a newer cozyops "
                         f"(this one knows up to {SCHEMA_VERSION})", "upgrade cozyops; the file is left as it is")
    db.isolation_level = None  # transactions by hand: SQLite's DDL is transactional
    try:
        db.execute("BEGIN IMMEDIATE")
        version = db.execute("PRAGMA user_version").fetchone()[0]  # another process may have done it
        if version < SCHEMA_VERSION:
            # A file of the first release records no version (0) and holds version 1's tables
            # (possibly only some of them): CREATE IF NOT EXISTS makes them whole, then upgrade.
            steps = [SCHEMA_V1] + [UPGRADES[number] for number in range(max(version, 1), SCHEMA_VERSION)]
            for statement in _statements("".join(steps)):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except sqlite3.DatabaseError as error:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise StateError(str(path), f"cannot upgrade its schema from version {max(version, 1)}: {error}") from None
    finally:
        db.isolation_level = ""


def _statements(script: str) -> list[str]:
    """The statements of a script (``executescript`` would commit the transaction)."""
    found, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            found.append(current.strip())
            current = ""
    return [statement for statement in found if statement]


def connect(state_dir: Path) -> sqlite3.Connection:
    """The fleet's ``state.db`` at the current schema version (upgraded in place when older)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "state.db"
    try:
        db = sqlite3.connect(path, check_same_thread=False, timeout=30)
        # WAL with synchronous=NORMAL: an entry survives the process crashing right after it
        # (what a journal is for) without an fsync per entry, which would cost more than the
        # UPDATE message it journals.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.DatabaseError as error:
        raise StateError(str(path), f"not a usable SQLite database: {error}",
                         "move it aside; cozyops starts a new one") from None
    try:
        _upgrade(db, path)
    except BaseException:
        db.close()
        raise
    return db


def schema_version(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


class Challenges:
    """The journal of ACME challenge TXT values published and not yet removed."""

    def __init__(self, db: sqlite3.Connection, run: str | None = None) -> None:
        self.db = db
        self.run = run or f"{_now()} pid {os.getpid()}"
        self._lock = threading.Lock()

    def add(self, zone: str, values: list[tuple[str, str]]) -> None:
        """Journal (fqdn, value) pairs about to be published in ``zone`` (committed before they are sent)."""
        with self._lock, self.db:
            self.db.executemany("INSERT INTO challenges (at, run, zone, fqdn, value) VALUES (?,?,?,?,?)",
                                [(_now(), self.run, zone, fqdn, value) for fqdn, value in values])

    def remove(self, zone: str, values: list[tuple[str, str]]) -> None:
        """Forget (fqdn, value) pairs removed from ``zone``."""
        with self._lock, self.db:
            self.db.executemany("DELETE FROM challenges WHERE zone = ? AND fqdn = ? AND value = ?",
                                [(zone, fqdn, value) for fqdn, value in values])

    def left(self, other_runs_only: bool = True) -> dict[str, list[tuple[str, str]]]:
        """Values journaled and not removed, by zone (by default those of other runs: interrupted ones)."""
        query = "SELECT zone, fqdn, value FROM challenges"
        args: tuple = ()
        if other_runs_only:
            query += " WHERE run != ?"
            args = (self.run,)
        found: dict[str, list[tuple[str, str]]] = {}
        with self._lock:
            for zone, fqdn, value in self.db.execute(query + " ORDER BY id", args).fetchall():
                if (fqdn, value) not in found.setdefault(zone, []):
                    found[zone].append((fqdn, value))
        return found


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



class Ledger:
    """The v2 import ledger, in ``state.db``: each source item (a member and its occurrence, an
    album, a reference, a contact) imported into an instance → its v3 id, path and checksum.

    Each entry is committed as soon as the item is written, so that ``--resume`` after a crash
    continues where it stopped and a re-run creates nothing twice.
    """

    def __init__(self, state_dir: Path, export: str, domain: str) -> None:
        self.db = connect(state_dir)
        self.export, self.domain = export, domain

    def close(self) -> None:
        self.db.close()

    def status(self) -> str:
        """``new``, ``started`` (unfinished) or ``finished``."""
        row = self.db.execute("SELECT finished FROM v2_imports WHERE export = ? AND domain = ?",
                              (self.export, self.domain)).fetchone()
        return "new" if row is None else ("finished" if row[0] else "started")

    def start(self, source: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO v2_imports (export, domain, source, started) VALUES (?,?,?,?)",
                        (self.export, self.domain, source, _now()))
        self.db.execute("UPDATE v2_imports SET finished = NULL WHERE export = ? AND domain = ?",
                        (self.export, self.domain))
        self.db.commit()

    def finish(self) -> None:
        self.db.execute("UPDATE v2_imports SET finished = ? WHERE export = ? AND domain = ?",
                        (_now(), self.export, self.domain))
        self.db.commit()

    def get(self, key: str) -> dict | None:
        row = self.db.execute("SELECT v3_id, v3_path, checksum, size FROM v2_ledger WHERE export = ? AND domain = ? "
                              "AND key = ?", (self.export, self.domain, key)).fetchone()
        return None if row is None else {"id": row[0], "path": row[1], "checksum": row[2], "size": row[3]}

    def owner(self, v3_path: str) -> str | None:
        """The key of the item imported at ``v3_path`` (compared byte for byte), if any."""
        row = self.db.execute("SELECT key FROM v2_ledger WHERE export = ? AND domain = ? AND v3_path = ?",
                              (self.export, self.domain, v3_path)).fetchone()
        return row[0] if row else None

    def put(self, key: str, v3_id: str, v3_path: str | None = None, checksum: str | None = None,
            size: int = 0) -> None:
        self.db.execute("INSERT OR REPLACE INTO v2_ledger (export, domain, key, v3_id, v3_path, checksum, size, at) "
                        "VALUES (?,?,?,?,?,?,?,?)",
                        (self.export, self.domain, key, v3_id, v3_path, checksum, size, _now()))
        self.db.commit()

    def imported_bytes(self) -> int:
        row = self.db.execute("SELECT COALESCE(SUM(size), 0) FROM v2_ledger WHERE export = ? AND domain = ?",
                              (self.export, self.domain)).fetchone()
        return int(row[0])

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM v2_ledger WHERE export = ? AND domain = ?",
                               (self.export, self.domain)).fetchone()[0]


class Steps:
    """The journal of one long operation (``kind``, ``subject``: say ``move``, ``alice.example.org``)
    made of named steps, each committed when done with what it produced, so that a run killed at
    any point continues after the last step done and never does one twice.

    ``start(params)`` begins the operation, or continues an unfinished one: it returns the
    parameters the first run recorded (a continuation goes on with the same ones) and ``new`` is
    false. ``finish(outcome)`` ends it; ``forget()`` removes every trace (an aborted operation).
    """

    def __init__(self, state_dir: Path, kind: str, subject: str) -> None:
        self.db = connect(state_dir)
        self.kind, self.subject = kind, subject
        self.new = True

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Steps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _row(self) -> tuple | None:
        return self.db.execute("SELECT params, started, finished, outcome FROM operations "
                               "WHERE kind = ? AND subject = ?", (self.kind, self.subject)).fetchone()

    def status(self) -> str:
        """``new`` (never started, or forgotten), ``started`` (unfinished) or ``finished``."""
        row = self._row()
        return "new" if row is None else ("finished" if row[2] else "started")

    def params(self) -> dict | None:
        row = self._row()
        return None if row is None else json.loads(row[0])

    def outcome(self) -> str | None:
        row = self._row()
        return None if row is None else row[3]

    def start(self, params: dict) -> dict:
        """Begin (or, when unfinished, continue) the operation; the parameters it runs with."""
        row = self._row()
        if row is not None and not row[2]:
            self.new = False
            return json.loads(row[0])
        with self.db:
            self.db.execute("DELETE FROM operation_steps WHERE kind = ? AND subject = ?", (self.kind, self.subject))
            self.db.execute("INSERT OR REPLACE INTO operations (kind, subject, params, started) VALUES (?,?,?,?)",
                            (self.kind, self.subject, json.dumps(params, sort_keys=True), _now()))
        self.new = True
        return params

    def done(self, step: str) -> bool:
        return self.db.execute("SELECT 1 FROM operation_steps WHERE kind = ? AND subject = ? AND step = ?",
                               (self.kind, self.subject, step)).fetchone() is not None

    def record(self, step: str, result: object = None) -> None:
        """Mark ``step`` done (committed at once), with what it produced (JSON)."""
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO operation_steps (kind, subject, step, at, result) "
                            "VALUES (?,?,?,?,?)", (self.kind, self.subject, step, _now(), json.dumps(result)))

    def result(self, step: str) -> object:
        """What ``step`` produced (``None`` when not done)."""
        row = self.db.execute("SELECT result FROM operation_steps WHERE kind = ? AND subject = ? AND step = ?",
                              (self.kind, self.subject, step)).fetchone()
        return None if row is None or row[0] is None else json.loads(row[0])

    def steps(self) -> list[tuple[str, str]]:
        """The steps done, in order: (step, when)."""
        return self.db.execute("SELECT step, at FROM operation_steps WHERE kind = ? AND subject = ? ORDER BY at, rowid",
                               (self.kind, self.subject)).fetchall()

    def finish(self, outcome: str = "done") -> None:
        with self.db:
            self.db.execute("UPDATE operations SET finished = ?, outcome = ? WHERE kind = ? AND subject = ?",
                            (_now(), outcome, self.kind, self.subject))

    def forget(self) -> None:
        with self.db:
            self.db.execute("DELETE FROM operation_steps WHERE kind = ? AND subject = ?", (self.kind, self.subject))
            self.db.execute("DELETE FROM operations WHERE kind = ? AND subject = ?", (self.kind, self.subject))


class Owned:
    """What the fleet owns on its servers: ``instance`` (created or adopted by the fleet) and
    ``site`` (nginx sites it wrote), each with its server, how it came to be the fleet's
    (``created``, ``adopted``) and the settings last applied (JSON: what cozy-stack does not show
    back, such as the e-mail address or the time zone). A plan touches only what is listed here.
    Also the digest of each server's provisioning inputs at its last successful run."""

    def __init__(self, state_dir: Path) -> None:
        self.db = connect(state_dir)
        self._lock = threading.Lock()  # one connection shared by an apply's threads: one transaction at a time

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Owned:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def all(self, kind: str) -> dict[str, dict]:
        """name -> {server, origin, settings, at}."""
        rows = self.db.execute("SELECT name, server, origin, settings, at FROM owned WHERE kind = ?", (kind,))
        return {name: {"server": server, "origin": origin, "settings": json.loads(settings), "at": at}
                for name, server, origin, settings, at in rows}

    def get(self, kind: str, name: str) -> dict | None:
        row = self.db.execute("SELECT server, origin, settings, at FROM owned WHERE kind = ? AND name = ?",
                              (kind, name)).fetchone()
        return None if row is None else {"server": row[0], "origin": row[1], "settings": json.loads(row[2]),
                                         "at": row[3]}

    def put(self, kind: str, name: str, server: str, origin: str = "created", settings: dict | None = None) -> None:
        """Record (or update) that the fleet owns ``name``; an existing record keeps its origin."""
        with self._lock, self.db:
            self.db.execute(
                "INSERT INTO owned (kind, name, server, origin, settings, at) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT (kind, name) DO UPDATE SET server = excluded.server, settings = excluded.settings, "
                "at = excluded.at", (kind, name, server, origin, json.dumps(settings or {}, sort_keys=True), _now()))

    def drop(self, kind: str, name: str) -> None:
        with self._lock, self.db:
            self.db.execute("DELETE FROM owned WHERE kind = ? AND name = ?", (kind, name))

    def server_digest(self, server: str) -> str | None:
        row = self.db.execute("SELECT digest FROM server_inputs WHERE server = ?", (server,)).fetchone()
        return None if row is None else row[0]

    def set_server_digest(self, server: str, digest: str | None) -> None:
        with self.db:
            if digest is None:
                self.db.execute("DELETE FROM server_inputs WHERE server = ?", (server,))
            else:
                self.db.execute("INSERT OR REPLACE INTO server_inputs (server, digest, at) VALUES (?,?,?)",
                                (server, digest, _now()))
