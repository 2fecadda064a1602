"""Certificates and keys under the fleet's state directory; their metadata in ``state.db``.

``<fleet>/.cozyops/certs/<name>/``: ``privkey.pem`` (0600), ``cert.pem``, ``chain.pem``,
``fullchain.pem``.

A certificate that arrives is kept in three steps, each of which survives a kill of the process:

1. its issuance is recorded (``issuances``: the weekly budget counts what the CA issued);
2. its files are staged whole as ``<file>.next`` (``fullchain.pem.next`` last), then moved into
   place one by one (``fullchain.pem`` last);
3. its row in ``certificates`` is replaced.

:meth:`CertStore.recover`, at the start of the next run, finishes what a kill interrupted: staged
files complete (``fullchain.pem.next`` present) are moved into place, incomplete ones removed;
files whose certificate has no row (or another serial than its row) are adopted after checking
that the key matches the certificate and the chain signs it.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cozyops import files, state
from cozyops.tls.policy import Issued, Window

PEM_END = "-----END CERTIFICATE-----"
FILES = ("privkey.pem", "cert.pem", "chain.pem", "fullchain.pem")  # staged and moved in this order
STAGED = ".next"


def _iso(moment: datetime.datetime | None) -> str | None:
    return moment.astimezone(datetime.UTC).isoformat(timespec="seconds") if moment else None


def _parse(text: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(text) if text else None


def split_chain(fullchain: str) -> list[str]:
    """The PEM blocks of a chain, leaf first."""
    return [part.strip() + "\n" + PEM_END + "\n" for part in fullchain.split(PEM_END) if part.strip()]


@dataclass
class Record:
    name: str
    domains: tuple[str, ...]
    serial: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    issuer: str
    directory: str
    key_type: str
    issued_at: datetime.datetime
    ari: Window | None = None
    ari_next_check: datetime.datetime | None = None


@dataclass
class Recovery:
    """What :meth:`CertStore.recover` found after an interrupted run."""

    completed: list[str] = field(default_factory=list)  # staged files moved into place
    discarded: list[str] = field(default_factory=list)  # incomplete staged files removed
    adopted: list[str] = field(default_factory=list)  # files without their row: row written
    broken: dict[str, str] = field(default_factory=dict)  # files that cannot be used: why


def _leaf_record(name: str, fullchain_pem: str, directory: str, key_type: str,
                 issued_at: datetime.datetime | None = None) -> tuple[Record, list[str]]:
    pems = split_chain(fullchain_pem)
    leaf = x509.load_pem_x509_certificate(pems[0].encode())
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        domains = tuple(sans.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        domains = ()
    record = Record(name, domains, f"{leaf.serial_number:x}", leaf.not_valid_before_utc, leaf.not_valid_after_utc,
                    leaf.issuer.rfc4514_string(), directory, key_type,
                    issued_at or datetime.datetime.now(datetime.UTC))
    return record, pems


def check_pair(key_pem: bytes, fullchain_pem: str) -> str | None:
    """Why this key and chain are not a usable certificate (None when they are): the key must be
    the certificate's, and each certificate of the chain must be signed by the next."""
    try:
        pems = split_chain(fullchain_pem)
        chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in pems]
        key = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as error:
        return f"unreadable: {error}"
    if not chain:
        return "no certificate in fullchain.pem"
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*raw) != chain[0].public_key().public_bytes(*raw):
        return "privkey.pem is not the key of fullchain.pem's certificate"
    if len(chain) < 2:
        return "fullchain.pem has no issuer certificate"
    for child, parent in zip(chain, chain[1:], strict=False):
        try:
            child.verify_directly_issued_by(parent)
        except Exception as error:  # noqa: BLE001 - InvalidSignature, a key type it cannot check
            return f"the chain does not verify ({child.subject.rfc4514_string()}: {type(error).__name__})"
    return None


class CertStore:
    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "certs"
        self.db = state.connect(state_dir)
        self._lock = threading.Lock()  # one transaction at a time on the shared connection

    def close(self) -> None:
        self.db.close()

    def dir(self, name: str) -> Path:
        return self.root / name

    def fullchain(self, name: str) -> Path:
        return (self.dir(name) / "fullchain.pem").absolute()

    def privkey(self, name: str) -> Path:
        return (self.dir(name) / "privkey.pem").absolute()

    def write(self, name: str, key_pem: bytes, fullchain_pem: str, directory: str, key_type: str) -> Record:
        """Write the files of a certificate (staged, then moved into place; safe from any thread)."""
        record, pems = _leaf_record(name, fullchain_pem, directory, key_type)
        folder = self.dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        files.write_private(folder / ("privkey.pem" + STAGED), key_pem)
        files.write_atomic(folder / ("cert.pem" + STAGED), pems[0])
        files.write_atomic(folder / ("chain.pem" + STAGED), "".join(pems[1:]))
        files.write_atomic(folder / ("fullchain.pem" + STAGED), "".join(pems))  # last: the set is whole
        self._move_staged(folder)
        return record

    @staticmethod
    def _move_staged(folder: Path) -> None:
        for part in FILES:
            staged = folder / (part + STAGED)
            if staged.exists():
                os.replace(staged, folder / part)

    def _issuance(self, record: Record, renewal: bool) -> None:
        with self._lock, self.db:
            known = self.db.execute("SELECT 1 FROM issuances WHERE directory = ? AND name = ? AND serial = ?",
                                    (record.directory, record.name, record.serial)).fetchone()
            if not known:
                self.db.execute(
                    "INSERT INTO issuances (at, directory, name, domains, renewal, serial) VALUES (?,?,?,?,?,?)",
                    (_iso(record.issued_at), record.directory, record.name, json.dumps(record.domains),
                     int(renewal), record.serial))

    def _row(self, record: Record) -> None:
        with self._lock, self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO certificates (name, domains, serial, not_before, not_after, issuer, directory, "
                "key_type, issued_at, ari_start, ari_end, ari_next_check) VALUES (?,?,?,?,?,?,?,?,?,NULL,NULL,NULL)",
                (record.name, json.dumps(record.domains), record.serial, _iso(record.not_before),
                 _iso(record.not_after), record.issuer, record.directory, record.key_type, _iso(record.issued_at)))

    def record(self, records: list[tuple[Record, bool]]) -> None:
        """Keep the issuance and the row of certificates (with whether each is a renewal)."""
        for record, renewal in records:
            self._issuance(record, renewal)
            self._row(record)

    def save(self, name: str, key_pem: bytes, fullchain_pem: str, directory: str, key_type: str,
             renewal: bool) -> Record:
        """Keep a certificate the CA just issued: its issuance (for the budget), its files, its row,
        in that order, each committed before the next (safe from any thread)."""
        record, _ = _leaf_record(name, fullchain_pem, directory, key_type)
        self._issuance(record, renewal)
        record = self.write(name, key_pem, fullchain_pem, directory, key_type)
        self._row(record)
        return record

    def recover(self, directory: str, key_type: str) -> Recovery:
        """Finish what an interrupted run left (see the module's text); ``directory`` and
        ``key_type``: the fleet's, for certificates adopted without a row."""
        found = Recovery()
        if not self.root.is_dir():
            return found
        rows = self.records()
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir():
                continue
            name = folder.name
            if (folder / ("fullchain.pem" + STAGED)).exists():
                self._move_staged(folder)
                found.completed.append(name)
            else:
                stray = [folder / (part + STAGED) for part in FILES if (folder / (part + STAGED)).exists()]
                for path in stray:
                    path.unlink()
                if stray:
                    found.discarded.append(name)
            fullchain, privkey = folder / "fullchain.pem", folder / "privkey.pem"
            if not fullchain.exists() or not privkey.exists():
                continue
            try:
                text = fullchain.read_text()
                record, _ = _leaf_record(name, text, directory, key_type)
            except (ValueError, IndexError, UnicodeDecodeError) as error:
                found.broken[name] = f"{fullchain}: unreadable ({type(error).__name__})"
                if rows.get(name) is not None:
                    with self._lock, self.db:
                        self.db.execute("DELETE FROM certificates WHERE name = ?", (name,))
                continue
            row = rows.get(name)
            if row is not None and row.serial == record.serial:
                continue
            problem = check_pair(privkey.read_bytes(), text)
            if problem:
                found.broken[name] = f"{folder}: {problem}"
                if row is not None:  # its row names a certificate no longer there: missing, issued again
                    with self._lock, self.db:
                        self.db.execute("DELETE FROM certificates WHERE name = ?", (name,))
                continue
            if row is not None:
                record.directory, record.key_type = row.directory, row.key_type
            record.issued_at = record.not_before
            renewal = row is not None or any(True for _ in self.db.execute(
                "SELECT 1 FROM issuances WHERE name = ? LIMIT 1", (name,)))
            self._issuance(record, renewal)
            self._row(record)
            found.adopted.append(name)
        return found

    def set_ari(self, name: str, window: Window | None, next_check: datetime.datetime) -> None:
        self.db.execute("UPDATE certificates SET ari_start = ?, ari_end = ?, ari_next_check = ? WHERE name = ?",
                        (_iso(window.start) if window else None, _iso(window.end) if window else None,
                         _iso(next_check), name))
        self.db.commit()

    def expire_now(self, name: str) -> None:
        """Mark a certificate due (tests, and an operator forcing a renewal)."""
        now = datetime.datetime.now(datetime.UTC)
        self.db.execute("UPDATE certificates SET not_after = ?, ari_start = NULL, ari_end = NULL WHERE name = ?",
                        (_iso(now), name))
        self.db.commit()

    def records(self) -> dict[str, Record]:
        rows = self.db.execute(
            "SELECT name, domains, serial, not_before, not_after, issuer, directory, key_type, issued_at, "
            "ari_start, ari_end, ari_next_check FROM certificates ORDER BY name").fetchall()
        found = {}
        for row in rows:
            window = Window(_parse(row[9]), _parse(row[10])) if row[9] and row[10] else None
            found[row[0]] = Record(row[0], tuple(json.loads(row[1])), row[2], _parse(row[3]), _parse(row[4]), row[5],
                                   row[6], row[7], _parse(row[8]), window, _parse(row[11]))
        return found

    def history(self, directory: str) -> list[Issued]:
        """Issuances from ``directory`` (for the budget): every name set ever, with when."""
        rows = self.db.execute("SELECT at, domains, renewal FROM issuances WHERE directory = ?",
                               (directory,)).fetchall()
        return [Issued(_parse(at), tuple(json.loads(domains)), bool(renewal)) for at, domains, renewal in rows]
