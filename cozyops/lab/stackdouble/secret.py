"""The admin passphrase's scrypt hash (cozy-stack.md §1.12, §2.1) and the double's other secrets."""

from __future__ import annotations

import hashlib
import hmac
import os
import threading

N, R, P, SALT_LEN, KEY_LEN = 32768, 8, 1, 16, 32
MAXMEM = 64 * 1024 * 1024


def hash_passphrase(passphrase: str) -> str:
    """``scrypt$32768$8$1$<16-byte salt hex>$<32-byte key hex>``."""
    salt = os.urandom(SALT_LEN)
    key = hashlib.scrypt(passphrase.encode(), salt=salt, n=N, r=R, p=P, dklen=KEY_LEN, maxmem=MAXMEM)
    return f"scrypt${N}${R}${P}${salt.hex()}${key.hex()}"


class BadHash(ValueError):
    pass


def verify(passphrase: str, hashed: str) -> bool:
    """Any N/r/p is accepted (older N=16384 hashes too)."""
    parts = hashed.strip().split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise BadHash("not a scrypt hash")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
    except ValueError:
        raise BadHash("not a scrypt hash") from None
    maxmem = max(MAXMEM, 129 * n * r * p + 1024 * 1024)
    got = hashlib.scrypt(passphrase.encode(), salt=salt, n=n, r=r, p=p, dklen=len(key), maxmem=maxmem)
    return hmac.compare_digest(got, key)


class Verifier:
    """Remembers (hash line, digest of a passphrase) pairs already checked: scrypt is slow on purpose,
    and the admin CLI sends the passphrase with every request."""

    def __init__(self) -> None:
        self._ok: set[tuple[str, bytes]] = set()
        self._lock = threading.Lock()

    def check(self, passphrase: str, hashed: str) -> bool:
        entry = (hashed.strip(), hashlib.sha256(passphrase.encode()).digest())
        with self._lock:
            if entry in self._ok:
                return True
        if verify(passphrase, hashed):
            with self._lock:
                self._ok.add(entry)
            return True
        return False
