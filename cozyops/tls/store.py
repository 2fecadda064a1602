"""Certificates and keys under the fleet's state directory; their metadata in ``state.db``.

``<fleet>/.cozyops/certs/<name>/``: ``privkey.pem`` (0600), ``cert.pem``, ``chain.pem``,
``fullchain.pem``. Every file is replaced atomically; the key is written first, so a reader that
finds a new ``fullchain.pem`` finds its key.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from cozyops import files, state
from cozyops.tls.policy import Issued, Window

PEM_END = "-----END CERTIFICATE-----"


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
    deployed: str | None = None


class CertStore:
    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "certs"
        self.db = state.connect(state_dir)

    def close(self) -> None:
        self.db.close()

    def dir(self, name: str) -> Path:
        return self.root / name

    def fullchain(self, name: str) -> Path:
        return (self.dir(name) / "fullchain.pem").absolute()

    def privkey(self, name: str) -> Path:
        return (self.dir(name) / "privkey.pem").absolute()

    def write(self, name: str, key_pem: bytes, fullchain_pem: str, directory: str, key_type: str) -> Record:
        """Write the files of a new certificate (safe from any thread); ``record`` then keeps its metadata."""
        pems = split_chain(fullchain_pem)
        leaf = x509.load_pem_x509_certificate(pems[0].encode())
        folder = self.dir(name)
        files.write_private(folder / "privkey.pem", key_pem)
        files.write_atomic(folder / "cert.pem", pems[0])
        files.write_atomic(folder / "chain.pem", "".join(pems[1:]))
        files.write_atomic(folder / "fullchain.pem", "".join(pems))
        try:
            sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            domains = tuple(sans.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            domains = ()
        return Record(name, domains, f"{leaf.serial_number:x}", leaf.not_valid_before_utc, leaf.not_valid_after_utc,
                      leaf.issuer.rfc4514_string(), directory, key_type, datetime.datetime.now(datetime.UTC))

    def record(self, records: list[tuple[Record, bool]]) -> None:
        """Keep the metadata of certificates written (with whether each is a renewal), in one transaction."""
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO certificates (name, domains, serial, not_before, not_after, issuer, directory, "
                "key_type, issued_at, ari_start, ari_end, ari_next_check, deployed) "
                "VALUES (?,?,?,?,?,?,?,?,?,NULL,NULL,NULL,NULL)",
                [(r.name, json.dumps(r.domains), r.serial, _iso(r.not_before), _iso(r.not_after), r.issuer,
                  r.directory, r.key_type, _iso(r.issued_at)) for r, _ in records])
            self.db.executemany(
                "INSERT INTO issuances (at, directory, name, domains, renewal, serial) VALUES (?,?,?,?,?,?)",
                [(_iso(r.issued_at), r.directory, r.name, json.dumps(r.domains), int(renewal), r.serial)
                 for r, renewal in records])

    def save(self, name: str, key_pem: bytes, fullchain_pem: str, directory: str, key_type: str,
             renewal: bool) -> Record:
        record = self.write(name, key_pem, fullchain_pem, directory, key_type)
        self.record([(record, renewal)])
        return record

    def set_ari(self, name: str, window: Window | None, next_check: datetime.datetime) -> None:
        self.db.execute("UPDATE certificates SET ari_start = ?, ari_end = ?, ari_next_check = ? WHERE name = ?",
                        (_iso(window.start) if window else None, _iso(window.end) if window else None,
                         _iso(next_check), name))
        self.db.commit()

    def set_deployed(self, name: str, where: str) -> None:
        self.db.execute("UPDATE certificates SET deployed = ? WHERE name = ?", (where, name))
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
            "ari_start, ari_end, ari_next_check, deployed FROM certificates ORDER BY name").fetchall()
        found = {}
        for row in rows:
            window = Window(_parse(row[9]), _parse(row[10])) if row[9] and row[10] else None
            found[row[0]] = Record(row[0], tuple(json.loads(row[1])), row[2], _parse(row[3]), _parse(row[4]), row[5],
                                   row[6], row[7], _parse(row[8]), window, _parse(row[11]), row[12])
        return found

    def history(self, directory: str) -> list[Issued]:
        """Issuances from ``directory`` (for the budget): every name set ever, with when."""
        rows = self.db.execute("SELECT at, domains, renewal FROM issuances WHERE directory = ?",
                               (directory,)).fetchall()
        return [Issued(_parse(at), tuple(json.loads(domains)), bool(renewal)) for at, domains, renewal in rows]
