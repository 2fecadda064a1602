"""Instances: the ``global/instances`` registry and their lifecycle (cozy-stack.md §1.2, §2.3, §2.4, §1.6).

An instance document keeps cozy-stack's JSON names (``domain``, ``prefix``, ``locale``,
``register_token``, ``disk_quota`` as a string, ...); byte fields (tokens, secrets, hashes) are
base64 as Go marshals ``[]byte``.
"""

from __future__ import annotations

import base64
import codecs
import copy
import os
import threading
import time
import uuid

from . import secret
from .couch import GLOBAL_INSTANCES, Couch, CouchError, db_name, instance_prefix

INDEXES_VERSION = 38
REGISTRY_CACHE = 1.0  # seconds the registry read is kept (writes of this process forget it at once)
ILLEGAL = set(" /,;&?#@|='\"\t\r\n\x00")
# §1.2: the databases creating an instance makes.
DOCTYPES = (
    "io.cozy.files",
    "io.cozy.apps",
    "io.cozy.konnectors",
    "io.cozy.oauth.clients",
    "io.cozy.jobs",
    "io.cozy.triggers",
    "io.cozy.permissions",
    "io.cozy.sharings",
    "com.bitwarden.ciphers",
    "io.cozy.sessions.logins",
    "io.cozy.notifications",
    "io.cozy.settings",
    "io.cozy.contacts",
)
SECRET_FIELDS = ("passphrase_hash", "session_secret", "oauth_secret", "cli_secret")
# §1.2 --settings: keys that become instance fields; the others go to the settings document.
INSTANCE_SETTINGS = {
    "context": "context",
    "sponsorships": "sponsorships",
    "feature_sets": "feature_sets",
    "locale": "locale",
    "onboarding_finished": "onboarding_finished",
    "uuid": "uuid",
    "oidc_id": "oidc_id",
    "tos": "tos",
    "tos_latest": "tos_latest",
    "auto_update": "no_auto_update",
    "auth_mode": "auth_mode",
}
# The order of the attributes in responses: the Go struct's.
FIELD_ORDER = (
    "domain", "domain_aliases", "old_domain", "prefix", "locale", "uuid", "oidc_id", "franceconnect_id",
    "context", "sponsorships", "feature_sets", "tos", "tos_latest", "auth_mode", "no_auto_update", "blocked",
    "blocking_reason", "onboarding_finished", "password_defined", "magic_link", "moved", "deleting", "disk_quota",
    "indexes_version", "couch_cluster", "swift_cluster", "common_settings_version", "passphrase_hash",
    "passphrase_reset_token", "passphrase_reset_time", "register_token", "session_secret", "oauth_secret",
    "cli_secret",
)
KDF_MIN, KDF_MAX = 50_000, 5_000_000


class StackError(Exception):
    """An error cozy-stack answers as JSON:API: status, title, detail, source."""

    def __init__(self, status: int, title: str, detail: str, source: dict | None = None) -> None:
        super().__init__(f"{title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.source = source or {}


def not_found() -> StackError:
    return StackError(404, "Not Found", "Instance not found")


def illegal_domain() -> StackError:
    return StackError(422, "Invalid Parameter", "Domain name contains illegal characters", {"parameter": "domain"})


def from_couch(error: CouchError) -> StackError:
    if error.status == 0:
        return StackError(500, "Unqualified error", error.reason)
    return StackError(error.status, error.error, error.reason)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def validate_domain(domain: str, flat: bool) -> str:
    """IDNA → unicode, trimmed, lowercased; the illegal characters, dot rules and flat-mode ``-`` rule."""
    domain = domain.strip()
    try:
        host, sep, port = domain.partition(":")
        labels = [codecs.decode(label.encode(), "idna") if label.startswith("xn--") else label
                  for label in host.split(".")]
        domain = ".".join(labels) + sep + port
    except UnicodeError:
        raise illegal_domain() from None
    domain = domain.lower()
    if not domain or domain in (".", "..") or domain.startswith(".") or set(domain) & ILLEGAL:
        raise illegal_domain()
    if flat and "-" in domain.split(".")[0]:
        raise illegal_domain()
    return domain


def parse_settings(text: str) -> dict:
    """``--settings context:foo,offer:premium``."""
    out = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, _, value = item.partition(":")
        out[key.strip()] = value.strip()
    return out


def split_list(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def _bool(text: str | None) -> bool | None:
    if text is None or text == "":
        return None
    lowered = text.lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise StackError(422, "Invalid Parameter", f"strconv.ParseBool: parsing {text!r}: invalid syntax")


def _int(text: str | None, name: str) -> int | None:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise StackError(422, "Invalid Parameter", f"{name}: not an integer") from None


def tos(value: str) -> str:
    return "1.0.0-" + value if len(value) == 8 else value


def attributes(doc: dict, hide_secrets: bool = True) -> dict:
    """The JSON:API attributes of an instance: its fields but ``_id``/``_rev``, in the struct's order."""
    attrs = {}
    for name in FIELD_ORDER:
        if name in doc and not (hide_secrets and name in SECRET_FIELDS):
            attrs[name] = doc[name]
    attrs.setdefault("password_defined", None)
    for name, value in doc.items():
        if name not in attrs and not name.startswith("_") and not (hide_secrets and name in SECRET_FIELDS):
            attrs[name] = value
    return attrs


def resource(doc: dict, hide_secrets: bool = True) -> dict:
    return {
        "type": "instances",
        "id": doc["_id"],
        "attributes": attributes(doc, hide_secrets),
        "meta": {"rev": doc["_rev"]},
        "links": {"self": "/instances/" + doc["_id"]},
    }


class Instances:
    """The registry of instances, in ``global/instances``."""

    def __init__(self, couch: Couch, flat: bool) -> None:
        self.couch = couch
        self.flat = flat
        self.lock = threading.RLock()
        self._cache: tuple[float, list[dict]] | None = None

    def all(self) -> list[dict]:
        """Every instance's document (copies). The registry is read at most once a second and
        forgotten on every write of this process: cozy-stack too keeps instances in a cache
        instead of reading CouchDB on each request (pouchdb-server spent 4 ms a request on it)."""
        with self.lock:
            if self._cache is None or time.monotonic() - self._cache[0] > REGISTRY_CACHE:
                docs = self.couch.all_docs(GLOBAL_INSTANCES)
                self._cache = (time.monotonic(), [doc for doc in docs if not doc["_id"].startswith("_design/")])
            return copy.deepcopy(self._cache[1])

    def forget(self) -> None:
        """The registry changed: the next look-up reads it again."""
        with self.lock:
            self._cache = None

    def get(self, domain: str, aliases: bool = True, docs: list[dict] | None = None) -> dict | None:
        """By domain or alias (§2.2: ``GET /instances/:domain`` matches aliases too), in ``docs``
        (one reading of the registry for several look-ups) or in the registry as it is now."""
        domain = domain.lower()
        for doc in self.all() if docs is None else docs:
            if doc.get("domain") == domain or (aliases and domain in (doc.get("domain_aliases") or [])):
                return doc
        return None

    def by_old_domain(self, domain: str, docs: list[dict] | None = None) -> dict | None:
        for doc in self.all() if docs is None else docs:
            if doc.get("old_domain") == domain:
                return doc
        return None

    def require(self, domain: str) -> dict:
        doc = self.get(domain)
        if doc is None:
            raise not_found()
        return doc

    def taken(self, names: list[str], but: str | None = None) -> bool:
        for doc in self.all():
            if doc["_id"] == but:
                continue
            mine = {doc.get("domain")} | set(doc.get("domain_aliases") or [])
            if mine & set(names):
                return True
        return False

    def save(self, doc: dict) -> dict:
        try:
            return self.couch.put(GLOBAL_INSTANCES, doc)
        finally:
            self.forget()

    def check_aliases(self, aliases: list[str]) -> list[str]:
        return [validate_domain(alias, self.flat) for alias in aliases]

    # --- creation (§2.3)
    def new_doc(self, q) -> dict:
        """The instance document a ``POST /instances`` query asks for (no I/O but the checks)."""
        domain = validate_domain(q.param("Domain") or "", self.flat)
        aliases = self.check_aliases(split_list(q.param("DomainAliases")))
        if self.taken([domain, *aliases]):
            raise StackError(409, "Conflict", "Instance already exists")
        kdf = _int(q.param("KdfIterations"), "KdfIterations")
        if kdf and not KDF_MIN <= kdf <= KDF_MAX:
            raise StackError(422, "Invalid Parameter", "The KdfIterations number is not in the allowed range")
        if _int(q.param("SwiftLayout"), "SwiftLayout") == 0:
            raise StackError(400, "Bad Request", "Swift layout v1 disabled for instance creation")
        doc: dict = {"_id": uuid.uuid4().hex, "domain": domain}
        if aliases:
            doc["domain_aliases"] = aliases
        if q.param("OldDomain"):
            doc["old_domain"] = q.param("OldDomain").strip().lower()
        doc["prefix"] = instance_prefix(domain)
        doc["locale"] = q.param("Locale") or "en"
        for name, param in (("uuid", "UUID"), ("oidc_id", "OIDCID"), ("franceconnect_id", "FranceConnectID"),
                            ("context", "ContextName"), ("tos_latest", "TOSLatest"), ("auth_mode", "AuthMode")):
            if q.param(param):
                doc[name] = q.param(param)
        if q.param("TOSSigned"):
            doc["tos"] = tos(q.param("TOSSigned"))
        # §9 gotcha 2: creation reads lower-case `sponsorships` (the CLI sends `Sponsorships`).
        for name in ("sponsorships", "feature_sets"):
            if split_list(q.param(name)):
                doc[name] = split_list(q.param(name))
        if _bool(q.param("AutoUpdate")) is False:
            doc["no_auto_update"] = True
        magic = bool(_bool(q.param("MagicLink")))
        if magic:
            doc["magic_link"] = True
        quota = _int(q.param("DiskQuota"), "DiskQuota")
        if quota and quota > 0:
            doc["disk_quota"] = str(quota)
        doc["indexes_version"] = INDEXES_VERSION
        passphrase = q.param("Passphrase") or ""
        forced_random = magic or bool(q.param("FranceConnectID"))
        if passphrase:
            doc["onboarding_finished"] = True
            doc["password_defined"] = True
            doc["passphrase_hash"] = b64(secret.hash_passphrase(passphrase).encode())
        elif forced_random:
            doc["password_defined"] = False
            doc["passphrase_hash"] = b64(secret.hash_passphrase(b64(os.urandom(32))).encode())
        else:
            doc["password_defined"] = False
            doc["register_token"] = b64(os.urandom(16))
        settings = parse_settings(q.param("Settings") or "")
        for key in list(settings):
            if key in INSTANCE_SETTINGS:
                value = settings.pop(key)
                field = INSTANCE_SETTINGS[key]
                if field in ("sponsorships", "feature_sets"):
                    doc[field] = [v for v in value.split(" ") if v]
                elif field == "onboarding_finished":
                    doc[field] = value.lower() in ("1", "t", "true")
                elif field == "no_auto_update":
                    doc[field] = value.lower() in ("0", "f", "false")
                elif field == "tos":
                    doc[field] = tos(value)
                else:
                    doc[field] = value
        for name in ("session_secret", "oauth_secret", "cli_secret"):
            doc[name] = b64(os.urandom(64))
        doc["_settings"] = settings
        return doc

    def settings_from_query(self, q) -> dict:
        out = {}
        for key, param in (("email", "Email"), ("public_name", "PublicName"), ("tz", "Timezone"), ("phone", "Phone")):
            if q.param(param):
                out[key] = q.param(param)
        return out

    # --- modification (§2.4)
    def patch(self, doc: dict, q) -> tuple[dict, dict]:
        """Apply a ``PATCH /instances/:domain`` query to ``doc``; returns (doc, settings changes)."""
        settings_changes = self.settings_from_query(q)
        if q.has("Deleting") and q.param("Deleting") != "":
            # §2.4: `Deleting=…` only flips that flag.
            if _bool(q.param("Deleting")):
                doc["deleting"] = True
            else:
                doc.pop("deleting", None)
            return doc, {}
        if q.param("Locale"):
            doc["locale"] = q.param("Locale")
        for name, param in (("uuid", "UUID"), ("oidc_id", "OIDCID"), ("franceconnect_id", "FranceConnectID"),
                            ("context", "ContextName"), ("tos_latest", "TOSLatest"),
                            ("blocking_reason", "BlockingReason")):
            if q.param(param):
                doc[name] = q.param(param)
        if q.param("TOSSigned"):
            doc["tos"] = tos(q.param("TOSSigned"))
        if q.has("OldDomain") and q.param("OldDomain"):
            doc["old_domain"] = q.param("OldDomain").strip().lower()
        if q.param("DomainAliases"):
            aliases = self.check_aliases(split_list(q.param("DomainAliases")))
            if self.taken(aliases, but=doc["_id"]):
                raise StackError(409, "Conflict", "Instance already exists")
            doc["domain_aliases"] = aliases
        if q.param("Sponsorships"):
            doc["sponsorships"] = split_list(q.param("Sponsorships"))
        quota = _int(q.param("DiskQuota"), "DiskQuota")
        if quota is not None:
            if quota > 0:
                doc["disk_quota"] = str(quota)
            elif quota < 0:
                doc.pop("disk_quota", None)
        if _bool(q.param("OnboardingFinished")):
            doc["onboarding_finished"] = True
        magic = _bool(q.param("MagicLink"))
        if magic is True:
            doc["magic_link"] = True
        elif magic is False:
            doc.pop("magic_link", None)
        blocked = _bool(q.param("Blocked"))
        if blocked is True:
            doc["blocked"] = True
        elif blocked is False:
            doc.pop("blocked", None)
            doc.pop("blocking_reason", None)
        settings = parse_settings(q.param("Settings") or "")
        for key in list(settings):
            if key in INSTANCE_SETTINGS:
                value = settings.pop(key)
                field = INSTANCE_SETTINGS[key]
                doc[field] = value if field not in ("onboarding_finished",) else value.lower() == "true"
        settings_changes.update(settings)
        return doc, settings_changes

    def now(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def db(self, doc: dict, doctype: str) -> str:
        return db_name(doc["prefix"], doctype)
