"""An instance's life on one server's cozy-stack, through the admin API (and the public API for
apps), over the one connection module (``cozyops.stack.connect``).

Written from ../shared/reference/cozy-stack.md §1-2 and cozy-stack's source (web/instances,
model/instance): ``POST /instances`` creates and installs the apps before it answers, the answer
carries ``register_token`` (base64) for the onboarding link ``https://<domain>/?registerToken=<hex>``;
``PATCH /instances/:domain`` changes locale, quota (``DiskQuota``, -1: none), context, e-mail,
public name, time zone, blocking; ``DELETE`` destroys. Apps: ``POST``/``PUT /apps/<slug>`` on the
public port with a CLI token of scope ``io.cozy.apps``.

Nothing here prints; the register token is returned to the caller, never logged.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from cozyops.errors import CozyopsError
from cozyops.model import Instance
from cozyops.stack.admin import AdminClient
from cozyops.stack.admin import Instance as StackInstance
from cozyops.stack.connect import StackClients, stack_problem
from cozyops.stack.http import StackError

# What the admin API shows back (compared with the fleet on every plan); the others (e-mail,
# public name, time zone) live in the instance's settings document: compared with what cozyops
# last applied (recorded in the fleet's state).
SHOWN = ("locale", "quota", "context", "blocked", "blocking_reason")
SETTINGS_ONLY = ("email", "public_name", "tz")
PARAMS = {"locale": "Locale", "quota": "DiskQuota", "context": "ContextName", "email": "Email",
          "public_name": "PublicName", "tz": "Timezone", "blocked": "Blocked", "blocking_reason": "BlockingReason"}
APPS_SCOPE = "io.cozy.apps"


@dataclass(frozen=True)
class Observed:
    """An instance as its server's cozy-stack shows it (the fields a plan compares)."""

    domain: str
    locale: str | None
    quota: int  # 0: none
    context: str | None
    blocked: bool
    blocking_reason: str | None
    onboarded: bool
    attributes: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_stack(cls, found: StackInstance) -> Observed:
        a = found.attributes
        return cls(found.domain, a.get("locale") or None, found.disk_quota, a.get("context") or None,
                   bool(a.get("blocked")), a.get("blocking_reason") or None, found.onboarded, a)

    def fields(self) -> dict:
        return {"locale": self.locale, "quota": self.quota, "context": self.context, "blocked": self.blocked,
                "blocking_reason": self.blocking_reason}


@dataclass(frozen=True)
class Created:
    domain: str
    onboarding_link: str | None  # None when the instance has a passphrase already; a secret: never logged


def onboarding_link(domain: str, attributes: dict) -> str | None:
    token = attributes.get("register_token")
    if not token:
        return None
    return f"https://{domain}/?registerToken={base64.b64decode(token).hex()}"


def observe(admin: AdminClient) -> dict[str, Observed]:
    """Every instance of the server (the fleet's or not), by domain."""
    return {found.domain: Observed.from_stack(found) for found in admin.instances()}


def differences(instance: Instance, observed: Observed | None, applied: dict) -> dict[str, tuple[Any, Any]]:
    """field -> (now, wanted) for the fields the fleet sets that differ: shown fields against the
    server, settings-only fields against what was last applied (``applied``)."""
    wanted = instance.settings()
    found = {}
    for name, value in wanted.items():
        if name in SHOWN:
            now = observed.fields()[name] if observed is not None else None
            if name == "blocked" and not value and observed is not None and not observed.blocked:
                continue
            if name == "blocking_reason" and not wanted.get("blocked"):
                continue  # a reason only means something on a blocked instance
        else:
            now = applied.get(name)
        if now != value:
            found[name] = (now, value)
    return found


def params(changes: dict[str, Any]) -> dict[str, Any]:
    """Model field names -> PATCH /instances query parameters."""
    out: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "quota":
            out["DiskQuota"] = value if value else -1  # 0: no quota, sent as -1 as the CLI does
        elif name == "blocked":
            out["Blocked"] = bool(value)
        else:
            out[PARAMS[name]] = value
    return out


def _explain(error: StackError, server: str, domain: str) -> CozyopsError:
    if error.status == 409:
        return CozyopsError(f"instance {domain}", f"already exists on server {server}")
    return stack_problem(error, server, domain)


def create(stack: StackClients, instance: Instance) -> Created:
    """Create the instance with its apps (the stack installs them before it answers)."""
    try:
        found = stack.admin.create_instance(
            instance.domain, locale=instance.locale or "en", email=instance.email or "",
            public_name=instance.public_name or "", timezone=instance.tz or "", apps=list(instance.apps),
            disk_quota=instance.quota or 0, context=instance.context or "",
        )
        if instance.blocked:
            stack.admin.modify(instance.domain, **params({"blocked": True, **(
                {"blocking_reason": instance.blocking_reason} if instance.blocking_reason else {})}))
    except StackError as error:
        raise _explain(error, stack.server.name, instance.domain) from None
    return Created(instance.domain, onboarding_link(instance.domain, found.attributes))


def modify(stack: StackClients, domain: str, changes: dict[str, Any]) -> Observed:
    """PATCH the instance with ``changes`` (model field names)."""
    try:
        if changes.get("blocked") is False:
            stack.admin.modify(domain, Blocked=False)
            changes = {k: v for k, v in changes.items() if k not in ("blocked", "blocking_reason")}
            if not changes:
                return Observed.from_stack(stack.admin.instance(domain))
        return Observed.from_stack(stack.admin.modify(domain, **params(changes)))
    except StackError as error:
        raise _explain(error, stack.server.name, domain) from None


def destroy(stack: StackClients, domain: str) -> bool:
    """Destroy the instance; False when it was not there (a run killed after it went)."""
    try:
        stack.admin.destroy(domain)
    except StackError as error:
        if error.status == 404:
            return False
        raise _explain(error, stack.server.name, domain) from None
    return True


def show(stack: StackClients, domain: str) -> Observed | None:
    try:
        return Observed.from_stack(stack.admin.instance(domain))
    except StackError as error:
        if error.status == 404:
            return None
        raise _explain(error, stack.server.name, domain) from None


def disk_usage(stack: StackClients, domain: str) -> tuple[int, int]:
    """(used, quota) in bytes (quota 0: none)."""
    try:
        found = stack.admin.disk_usage(domain)
    except StackError as error:
        raise _explain(error, stack.server.name, domain) from None
    return int(found.get("used") or 0), int(found.get("quota") or 0)


# -- apps ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppResult:
    domain: str
    slug: str
    ok: bool
    message: str  # the version and state, or why not
    version: str = ""


def _apps_client(stack: StackClients, domain: str):
    try:
        token = stack.admin.token(domain, scope=APPS_SCOPE)
    except StackError as error:
        raise _explain(error, stack.server.name, domain) from None
    return stack.public(domain, token)


def apps(stack: StackClients, domain: str) -> list[dict]:
    """The instance's apps: slug, version, state, source."""
    client = _apps_client(stack, domain)
    try:
        body = client.http.request("GET", "/apps/", f"apps of {domain}").json()
    except StackError as error:
        raise _explain(error, stack.server.name, domain) from None
    return [{key: item.get("attributes", {}).get(key) for key in ("slug", "version", "state", "source")}
            for item in body.get("data") or []]


def _event_stream(text: str) -> tuple[str, Any]:
    """The last event of a text/event-stream answer: (event, data)."""
    event, data = "", None
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, lines = "", []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                lines.append(line[5:].strip())
        if name:
            event = name
            try:
                data = json.loads("\n".join(lines))
            except ValueError:
                data = "\n".join(lines)
    return event, data


def app(stack: StackClients, domain: str, slug: str, source: str | None = None, update: bool = False) -> AppResult:
    """Install (``update``: update) one app on one instance; an error is a result, not raised."""
    verb = "update" if update else "install"
    try:
        client = _apps_client(stack, domain)
        query = {"Source": source} if source else None
        response = client.http.request("PUT" if update else "POST", f"/apps/{slug}", f"{verb} {slug} on {domain}",
                                       (200, 202), params=query, headers={"Accept": "text/event-stream"})
    except CozyopsError as error:
        return AppResult(domain, slug, False, error.reason)
    event, data = _event_stream(response.text)
    if event == "error":
        return AppResult(domain, slug, False, data if isinstance(data, str) else json.dumps(data))
    attributes = ((data or {}).get("data") or {}).get("attributes", {}) if isinstance(data, dict) else {}
    version = attributes.get("version", "")
    return AppResult(domain, slug, True, f"{slug} {version} {attributes.get('state', '')}".strip(), version)
