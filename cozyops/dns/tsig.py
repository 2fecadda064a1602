"""TSIG keys in BIND's ``tsig-keygen`` format.

The file format (also what ``named.conf`` can ``include``)::

    key "name" {
            algorithm hmac-sha256;
            secret "base64";
    };

The secret never appears in ``repr`` or in error messages.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import dns.name
import dns.tsig
import dns.tsigkeyring
import dns.update

from cozyops import files
from cozyops.errors import ConfigError

ALGORITHMS = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-md5": dns.tsig.HMAC_MD5,
}
DEFAULT_ALGORITHM = "hmac-sha256"

_NAME = re.compile(r'key\s+"?([^"\s{]+)"?\s*\{')
_ALGORITHM = re.compile(r"algorithm\s+\"?([\w.-]+)\"?\s*;")
_SECRET = re.compile(r'secret\s+"([^"]+)"\s*;')


@dataclass(frozen=True)
class TsigKey:
    name: str
    algorithm: str
    secret: str = field(repr=False)

    def keyring(self) -> dict:
        return dns.tsigkeyring.from_text({self.name: self.secret})

    @property
    def algorithm_name(self) -> dns.name.Name:
        return ALGORITHMS[self.algorithm]

    def update(self, zone: str) -> dns.update.UpdateMessage:
        """An RFC 2136 UPDATE message for ``zone``, to be signed with this key."""
        return dns.update.UpdateMessage(
            dns.name.from_text(zone), keyring=self.keyring(), keyname=self.name,
            keyalgorithm=self.algorithm_name,
        )

    def to_bind(self) -> str:
        return (
            f'key "{self.name}" {{\n'
            f"\talgorithm {self.algorithm};\n"
            f'\tsecret "{self.secret}";\n'
            "};\n"
        )


def generate(name: str, algorithm: str = DEFAULT_ALGORITHM) -> TsigKey:
    """A new random key, as ``tsig-keygen -a ALGORITHM NAME`` makes it."""
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"TSIG key {name}", f"unsupported algorithm {algorithm!r}")
    size = {"hmac-sha384": 48, "hmac-sha512": 64}.get(algorithm, 32)
    return TsigKey(name, algorithm, base64.b64encode(secrets.token_bytes(size)).decode())


def parse(text: str, source: str = "TSIG key") -> TsigKey:
    """Read the first key of a ``tsig-keygen`` style text."""
    name, secret = _NAME.search(text), _SECRET.search(text)
    if not name or not secret:
        raise ConfigError(source, 'not a TSIG key file (expected key "NAME" { ... secret "..."; })')
    algorithm_match = _ALGORITHM.search(text)
    algorithm = algorithm_match.group(1).lower() if algorithm_match else DEFAULT_ALGORITHM
    if algorithm not in ALGORITHMS:
        raise ConfigError(source, f"unsupported TSIG algorithm {algorithm!r}")
    try:
        base64.b64decode(secret.group(1), validate=True)
    except binascii.Error:
        raise ConfigError(source, "the TSIG secret is not valid base64") from None
    return TsigKey(name.group(1), algorithm, secret.group(1))


def load(path: Path) -> TsigKey:
    try:
        content = path.read_bytes()
    except OSError as error:
        raise ConfigError(str(path), f"cannot read TSIG key file: {error.strerror}") from None
    try:
        text = content.decode()
    except UnicodeDecodeError:  # its message would quote a byte of the secret file: say nothing of it
        raise ConfigError(str(path), 'not a TSIG key file: not UTF-8 text (expected key "NAME" { ... })') from None
    return parse(text, str(path))


def write(path: Path, key: TsigKey) -> None:
    """Write the key file with mode 0600 from the start (never readable by others)."""
    files.write_private(path, key.to_bind())


def parse_any(text: str, source: str = "TSIG key") -> TsigKey:
    """A ``tsig-keygen`` text, or the one-line ``[ALGORITHM:]NAME:SECRET`` form (for environment variables)."""
    text = text.strip()
    if "{" in text:
        return parse(text, source)
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise ConfigError(source, "not a TSIG key (expected a tsig-keygen text or [ALGORITHM:]NAME:SECRET)")
    algorithm, name, secret = parts if len(parts) == 3 else (DEFAULT_ALGORITHM, *parts)
    quoted = f'key "{name}" {{ algorithm {algorithm.lower()}; secret "{secret}"; }};'
    return parse(quoted, source)


def load_reference(reference: Path) -> TsigKey:
    """A key from a file, or from an environment variable when given as ``env:NAME``."""
    import os

    text = str(reference)
    if text.startswith("env:"):
        variable = text[4:]
        return parse_any(os.environ.get(variable, ""), f"environment variable {variable}")
    return load(reference)
