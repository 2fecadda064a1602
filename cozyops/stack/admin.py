"""The admin API client (cozy-stack's port 6060): instances and tokens.

Written from ../shared/reference/cozy-stack.md section 2: Basic auth with an empty user and the
admin passphrase, case-sensitive query parameters, JSON:API bodies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cozyops.stack.http import Http

CLI_SCOPE = "io.cozy.files io.cozy.contacts io.cozy.photos.albums"


@dataclass(frozen=True)
class Instance:
    id: str
    rev: str
    attributes: dict[str, Any] = field(repr=False)

    @property
    def domain(self) -> str:
        return self.attributes["domain"]

    @property
    def prefix(self) -> str:
        return self.attributes.get("prefix", "")

    @property
    def locale(self) -> str:
        return self.attributes.get("locale", "")

    @property
    def disk_quota(self) -> int:
        return int(self.attributes.get("disk_quota") or 0)

    @property
    def onboarded(self) -> bool:
        return bool(self.attributes.get("onboarding_finished"))

    @property
    def blocked(self) -> bool:
        return bool(self.attributes.get("blocked"))

    @classmethod
    def from_resource(cls, resource: dict) -> Instance:
        return cls(resource["id"], resource.get("meta", {}).get("rev", ""), dict(resource.get("attributes", {})))


def _flag(value: bool) -> str:
    return "true" if value else "false"


class AdminClient:
    def __init__(self, base_url: str, passphrase: str, timeout: float = 120.0) -> None:
        self.http = Http(base_url, timeout=timeout)
        self.http.session.auth = ("", passphrase)  # cozy-stack checks only the password

    def _instance(self, method: str, path: str, where: str, expect: tuple[int, ...] = (200,), **params: Any):
        response = self.http.request(method, path, where, expect, params=params or None)
        return Instance.from_resource(response.json()["data"])

    def create_instance(
        self,
        domain: str,
        *,
        locale: str = "en",
        email: str = "",
        public_name: str = "",
        timezone: str = "",
        apps: list[str] | tuple[str, ...] = (),
        passphrase: str = "",
        disk_quota: int = 0,
        context: str = "",
        domain_aliases: list[str] | tuple[str, ...] = (),
    ) -> Instance:
        """POST /instances (reference §2.3). Blocks until the stack has installed the apps."""
        params: dict[str, Any] = {
            "Domain": domain,
            "Locale": locale,
            "Email": email,
            "PublicName": public_name,
            "Timezone": timezone,
            "Apps": ",".join(apps),
            "Passphrase": passphrase,
            "DiskQuota": str(disk_quota),
            "ContextName": context,
            "SwiftLayout": "-1",
            "CouchCluster": "-1",
        }
        if domain_aliases:
            params["DomainAliases"] = ",".join(domain_aliases)
        return self._instance("POST", "/instances", f"create instance {domain}", (201, 200), **params)

    def instances(self) -> list[Instance]:
        response = self.http.request("GET", "/instances", "list instances")
        return [Instance.from_resource(item) for item in response.json().get("data") or []]

    def instance(self, domain: str) -> Instance:
        return self._instance("GET", f"/instances/{domain}", f"instance {domain}")

    def modify(self, domain: str, **params: Any) -> Instance:
        """PATCH /instances/:domain with the reference's query parameters (Email=, Blocked=true, ...)."""
        clean = {key: _flag(value) if isinstance(value, bool) else str(value) for key, value in params.items()}
        return self._instance("PATCH", f"/instances/{domain}", f"modify instance {domain}", **clean)

    def set_disk_quota(self, domain: str, quota: int) -> Instance:
        """0 means no quota, sent as -1 as the CLI does (reference §1.5)."""
        return self.modify(domain, DiskQuota=quota if quota > 0 else -1)

    def block(self, domain: str, reason: str = "") -> Instance:
        return self.modify(domain, Blocked=True, **({"BlockingReason": reason} if reason else {}))

    def unblock(self, domain: str) -> Instance:
        return self.modify(domain, Blocked=False)

    def destroy(self, domain: str) -> None:
        self.http.request("DELETE", f"/instances/{domain}", f"destroy instance {domain}", (204,))

    def token(
        self, domain: str, scope: str = CLI_SCOPE, audience: str = "cli", subject: str = "CLI", expire: str = ""
    ) -> str:
        """POST /instances/token: a JWT as text (reference §1.8; a CLI token lives 30 minutes)."""
        params = {"Domain": domain, "Audience": audience, "Scope": scope, "Subject": subject}
        if expire:
            params["Expire"] = expire
        response = self.http.request("POST", "/instances/token", f"token for {domain}", params=params)
        return response.text.strip()

    def disk_usage(self, domain: str) -> dict:
        """GET /instances/:domain/disk-usage: ``used`` and (when set) ``quota``, in bytes (as strings)."""
        return self.http.request("GET", f"/instances/{domain}/disk-usage", f"disk usage of {domain}").json()

    def version(self) -> dict:
        return self.http.request("GET", "/version", "version").json()

    def close(self) -> None:
        self.http.close()
