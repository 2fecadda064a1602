"""The permissions of a request's token (cozy-stack's web/permissions/permissions.go)."""

from __future__ import annotations

from ..admin import JSONAPI
from ..httpd import Request, Response, json_response
from ..tokens import ALL_VERBS

PERMISSIONS = "io.cozy.permissions"


class PermissionsRoutes:
    """Mixin of PublicApp: the /permissions routes."""

    ROUTES = [
        ("GET", "/permissions/self", "permissions_self"),
    ]

    def permissions_self(self, request: Request, inst: dict) -> Response:
        """displayPermissions: the token's permission document; rules keyed ``rule<i>`` (Set.MarshalJSON),
        verbs in GET, POST, PUT, PATCH, DELETE order (VerbSet.MarshalJSON), empty fields left out."""
        perms = self.permissions(request, inst, "files")
        rules = {}
        for i, rule in enumerate(perms.rules):
            item: dict = {"type": rule.doctype}
            verbs = [v for v in ALL_VERBS if v in rule.verbs]
            if verbs:
                item["verbs"] = verbs
            if rule.selector:
                item["selector"] = rule.selector
            if rule.values:
                item["values"] = list(rule.values)
            rules[f"rule{i}"] = item
        attributes = {"type": perms.kind}
        if rules:
            attributes["permissions"] = rules
        resource = {"type": PERMISSIONS, "id": "", "attributes": attributes, "meta": {},
                    "links": {"self": "/permissions/"}}
        return json_response(200, {"data": resource}, JSONAPI)
