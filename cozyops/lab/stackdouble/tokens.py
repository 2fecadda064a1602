"""JWT tokens of an instance and their permission scopes (files-data reference §0, §4; cozy-stack.md §1.8).

Tokens are HS512 JWTs (the reference does not name the algorithm), with the claims
``aud``, ``iat``, ``iss`` (the instance's domain), ``sub`` and ``scope``; there is no ``exp``: a
token's validity is counted from ``iat`` by audience. CLI tokens are signed with the instance's
``cli_secret``, app and konnector tokens with its ``session_secret``, OAuth ones with its
``oauth_secret``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass

AUDIENCES = {"app": "app", "webapp": "app", "konn": "konn", "konnector": "konn", "cli": "cli",
             "access": "access", "access-token": "access", "refresh": "refresh", "refresh-token": "refresh"}
# Seconds a token is valid after its iat; refresh tokens do not expire.
VALIDITY = {"cli": 30 * 60, "app": 24 * 3600, "konn": 30 * 60, "access": 7 * 24 * 3600}
SECRET_OF = {"cli": "cli_secret", "app": "session_secret", "konn": "session_secret",
             "access": "oauth_secret", "refresh": "oauth_secret"}
ALL_VERBS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_DOCTYPE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_go_duration(text: str) -> float:
    """A Go duration (``2h``, ``30m``, ``1h30m``, ``90s``, ``1.5h``) in seconds; ValueError if not one."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    text = text.strip()
    sign = -1.0 if text.startswith("-") else 1.0
    rest = text.lstrip("+-")
    if rest == "0":
        return 0.0
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", rest)
    if not parts or "".join(a + b for a, b in parts) != rest:
        raise ValueError(f"time: invalid duration {text!r}")
    return sign * sum(float(a) * units[b] for a, b in parts)


def make(secret: bytes, audience: str, issuer: str, subject: str, scope: str, issued_at: float) -> str:
    header = {"alg": "HS512", "typ": "JWT"}
    claims: dict = {"aud": audience, "iat": int(issued_at), "iss": issuer}
    if subject:
        claims["sub"] = subject
    if scope:
        claims["scope"] = scope
    signing = _b64(json.dumps(header, separators=(",", ":")).encode()) + "." + _b64(
        json.dumps(claims, separators=(",", ":")).encode()
    )
    signature = hmac.new(secret, signing.encode(), hashlib.sha512).digest()
    return signing + "." + _b64(signature)


class TokenError(Exception):
    """A token refused: status and message verbatim from the reference."""

    def __init__(self, status: int, message: str, expired: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.expired = expired


def unverified_claims(token: str) -> dict:
    try:
        _, payload, _ = token.split(".")
        claims = json.loads(_unb64(payload))
    except (ValueError, TypeError):
        raise TokenError(400, "Invalid JWT token") from None
    if not isinstance(claims, dict):
        raise TokenError(400, "Invalid JWT token")
    return claims


def verify(token: str, secrets: dict[str, bytes], domain: str, now: float | None = None,
           old_domain: str = "") -> dict:
    """The claims of a valid token of this instance; TokenError otherwise.

    The issuer is the instance's domain or its old domain (cozy-stack's
    web/middlewares/permissions.go ExtractClaims)."""
    claims = unverified_claims(token)
    audience = claims.get("aud")
    secret = secrets.get(SECRET_OF.get(audience, ""), b"")
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = json.loads(_unb64(header_b64))
        signature = _unb64(signature_b64)
    except (ValueError, TypeError):
        raise TokenError(400, "Invalid JWT token") from None
    expected = hmac.new(secret, f"{header_b64}.{payload_b64}".encode(), hashlib.sha512).digest()
    if not secret or header.get("alg") != "HS512" or not hmac.compare_digest(signature, expected):
        raise TokenError(400, "Invalid JWT token")
    if claims.get("iss") not in (domain, old_domain or domain):
        raise TokenError(400, "Invalid JWT token")
    validity = VALIDITY.get(audience)
    issued = claims.get("iat")
    if not isinstance(issued, (int, float)):
        raise TokenError(400, "Invalid JWT token")
    if validity is not None and issued + validity < (time.time() if now is None else now):
        raise TokenError(400, "Expired token", expired=True)
    return claims


@dataclass(frozen=True)
class Rule:
    doctype: str
    verbs: frozenset
    values: tuple[str, ...] = ()
    selector: str = ""

    def covers_type(self, doctype: str) -> bool:
        if self.doctype.endswith(".*"):
            return doctype.startswith(self.doctype[:-1])
        return self.doctype == doctype

    def allows(self, doctype: str, verb: str) -> bool:
        verb = "GET" if verb == "HEAD" else verb
        return self.covers_type(doctype) and verb in self.verbs


def valid_doctype(name: str) -> bool:
    return bool(_DOCTYPE.match(name))


def parse_scope(scope: str) -> list[Rule]:
    """Rules separated by spaces, each ``type[:VERBS[:values[:selector]]]``; ValueError if malformed."""
    rules = []
    for part in scope.split(" "):
        if not part:
            continue
        fields = part.split(":", 3)
        doctype = fields[0]
        if doctype.endswith(".*"):
            if doctype.count(".") < 3 or not valid_doctype(doctype[:-2]):
                raise ValueError(part)
        elif not valid_doctype(doctype):
            raise ValueError(part)
        verbs = set(ALL_VERBS)
        if len(fields) > 1 and fields[1] and fields[1] != "ALL":
            verbs = set(fields[1].split(","))
            if not verbs <= set(ALL_VERBS) | {"HEAD"}:
                raise ValueError(part)
        values = tuple(v for v in fields[2].split(",") if v) if len(fields) > 2 else ()
        selector = fields[3] if len(fields) > 3 else ""
        rules.append(Rule(doctype, frozenset(verbs), values, selector))
    if not rules:
        raise ValueError("empty")
    return rules
