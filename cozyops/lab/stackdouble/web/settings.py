"""Settings of an instance (cozy-stack's web/settings: instance.go, capabilities.go,
disk_usage.go). Not blocked with the instance (web/routing.go: the /settings group has
``mwsNotBlocked``)."""

from __future__ import annotations

from ..admin import JSONAPI
from ..couch import db_name
from ..httpd import Request, Response, json_response
from ..instances import StackError
from ..vfs import FILES

SETTINGS = "io.cozy.settings"
INSTANCE_ID = "io.cozy.settings.instance"


class Settings:
    """Mixin of PublicApp: the /settings routes."""

    ROUTES = [
        ("GET", "/settings/disk-usage", "settings_disk_usage"),
        ("GET", "/settings/capabilities", "settings_capabilities"),
        ("GET", "/settings/instance", "settings_instance"),
        ("PUT", "/settings/instance", "settings_update_instance"),
    ]

    def _instance_fields(self, inst: dict, doc: dict) -> dict:
        """What getInstance and updateInstance add from the instance to the settings document."""
        doc["locale"] = inst.get("locale", "")
        doc["onboarding_finished"] = bool(inst.get("onboarding_finished"))
        if inst.get("password_defined") is not None:
            doc["password_defined"] = bool(inst["password_defined"])
        doc["auto_update"] = not inst.get("no_auto_update")
        doc["auth_mode"] = "two_factor_mail" if inst.get("auth_mode") in (1, "two_factor_mail") else "basic"
        doc["tos"] = inst.get("tos", "")
        doc["tos_latest"] = inst.get("tos_latest", "")
        doc["uuid"] = inst.get("uuid", "")
        doc["oidc_id"] = inst.get("oidc_id", "")
        doc["org_domain"] = inst.get("org_domain", "")
        doc["org_id"] = inst.get("org_id", "")
        doc["context"] = inst.get("context", "")
        return doc

    @staticmethod
    def _settings_resource(doc: dict) -> dict:
        attributes = {k: v for k, v in doc.items() if k not in ("_id", "_rev")}
        return {"type": SETTINGS, "id": INSTANCE_ID, "attributes": attributes, "meta": {"rev": doc.get("_rev")},
                "links": {"self": "/settings/instance"}}

    def settings_instance(self, request: Request, inst: dict) -> Response:
        """web/settings/instance.go getInstance: any valid token reads it (GetPermission only)."""
        self.permissions(request, inst, "files")
        doc = self.stack.couch.get(db_name(inst["prefix"], SETTINGS), INSTANCE_ID) or {"_id": INSTANCE_ID}
        doc = self._instance_fields(inst, doc)
        if not isinstance(doc.get("default_redirection"), str) or doc["default_redirection"].startswith("http"):
            doc["default_redirection"] = inst.get("default_redirection") or "home/"
        return json_response(200, {"data": self._settings_resource(doc)}, JSONAPI)

    def settings_update_instance(self, request: Request, inst: dict) -> Response:
        """web/settings/instance.go updateInstance: PUT on io.cozy.settings, the document as JSON:API."""
        perms = self.permissions(request, inst, "files")
        try:
            body = request.json()
            data = body["data"]
            attributes = dict(data.get("attributes") or {})
            rev = (data.get("meta") or {}).get("rev")
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            raise StackError(400, "Bad Request", "JSON input is malformed or is missing mandatory fields") from None
        if not perms.allows(SETTINGS, "PUT", [INSTANCE_ID]):
            raise self.forbidden(request, "files")
        name = db_name(inst["prefix"], SETTINGS)
        current = self.stack.couch.get(name, INSTANCE_ID) or {"_id": INSTANCE_ID}
        if rev and current.get("_rev") and rev != current["_rev"]:
            raise StackError(409, "Conflict", "Document update conflict")
        # Fields of the instance document itself are not stored in the settings document.
        for key in ("locale", "onboarding_finished", "password_defined", "auto_update", "auth_mode", "tos",
                    "tos_latest", "uuid", "oidc_id", "org_domain", "org_id", "context", "sponsorships"):
            attributes.pop(key, None)
        doc = {"_id": INSTANCE_ID, **attributes}
        if current.get("_rev"):
            doc["_rev"] = current["_rev"]
        self.stack.couch.put(name, doc)
        return json_response(200, {"data": self._settings_resource(self._instance_fields(inst, doc))}, JSONAPI)

    def settings_capabilities(self, request: Request, inst: dict) -> Response:
        """web/settings/capabilities.go getCapabilities: any valid token; versioning is on (not Swift)."""
        self.permissions(request, inst, "files")
        magic = bool(inst.get("magic_link"))
        attributes = {"file_versioning": True, "flat_subdomains": self.stack.flat,
                      "can_auth_with_password": not magic, "can_auth_with_magic_links": magic,
                      "can_auth_with_oidc": False}
        resource = {"type": SETTINGS, "id": "io.cozy.settings.capabilities", "attributes": attributes,
                    "meta": {}, "links": {"self": "/settings/capabilities"}}
        return json_response(200, {"data": resource}, JSONAPI)

    def settings_disk_usage(self, request: Request, inst: dict) -> Response:
        """web/settings/disk_usage.go diskUsage: ``used``, ``files``, ``versions`` always (strings),
        ``quota`` when not zero, ``trash`` with ``include=trash``."""
        perms = self.permissions(request, inst, "files")
        # checkAccessToDiskUsage: GET on the document, else CanWriteToAnyDirectory (a rule on
        # io.cozy.files with POST, whatever its values).
        if not (perms.allows(SETTINGS, "GET", ["io.cozy.settings.disk-usage"])
                or any(rule.allows(FILES, "POST") for rule in perms.rules)):
            raise self.forbidden(request, "files")
        used, trashed, _ = self.stack.vfs(inst).usage()
        attributes: dict = {"used": str(used)}
        quota = int(inst.get("disk_quota") or 0)
        if quota:
            attributes["quota"] = str(quota)
        attributes["files"] = str(used)
        if request.param("include") == "trash":
            attributes["trash"] = str(trashed)
        attributes["versions"] = "0"
        resource = {"type": SETTINGS, "id": "io.cozy.settings.disk-usage", "attributes": attributes,
                    "meta": {}, "links": {"self": "/settings/disk-usage"}}
        return json_response(200, {"data": resource}, JSONAPI)
