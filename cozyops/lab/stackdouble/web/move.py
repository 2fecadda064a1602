"""Exports of an instance (cozy-stack's web/move/move.go; cozy-stack.md §7)."""

from __future__ import annotations

from .. import move
from ..admin import JSONAPI
from ..httpd import Request, Response, json_response
from ..instances import StackError


class Move:
    """Mixin of PublicApp: the /move routes."""

    ROUTES = [
        ("GET", "/move/exports/:mac", "export_manifest"),
        ("GET", "/move/exports/data/:mac", "export_data"),
    ]

    def export_manifest(self, request: Request, inst: dict, mac: str) -> Response:
        doc = move.find_export_by_mac(self.stack, inst, mac)
        if doc is None:
            raise StackError(404, "Not Found", "export not found")
        return json_response(200, move.export_resource(doc), JSONAPI)

    def export_data(self, request: Request, inst: dict, mac: str) -> Response:
        doc = move.find_export_by_mac(self.stack, inst, mac)
        if doc is None:
            raise StackError(404, "Not Found", "export not found")
        return move._part_response(self.stack, inst, doc, request.param("cursor") or "")


