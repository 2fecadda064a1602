"""Applications (cozy-stack's web/apps/apps.go; cozy-stack.md §1.11). Not blocked with the
instance (web/routing.go: the /apps group has ``mwsNotBlocked``)."""

from __future__ import annotations

import json

from .. import apps as apps_mod
from ..admin import JSONAPI, jsonapi_error
from ..httpd import Request, Response, json_response
from ..instances import StackError


class Apps:
    """Mixin of PublicApp: the /apps routes."""

    ROUTES = [
        ("GET", "/apps/", "apps_list"),
        ("GET", "/apps/:slug", "apps_show"),
        ("POST", "/apps/:slug", "apps_install"),
        ("PUT", "/apps/:slug", "apps_update"),
    ]

    def _apps_allowed(self, request: Request, inst: dict, verb: str) -> None:
        perms = self.permissions(request, inst, "files")
        if not perms.allows(apps_mod.APPS, verb):
            raise self.forbidden(request, "files")

    def apps_list(self, request: Request, inst: dict) -> Response:
        self._apps_allowed(request, inst, "GET")
        docs = self.stack.apps(inst).list()
        return json_response(200, {"data": [apps_mod.resource(d) for d in docs], "meta": {"count": len(docs)}},
                             JSONAPI)

    def apps_show(self, request: Request, inst: dict, slug: str) -> Response:
        self._apps_allowed(request, inst, "GET")
        doc = self.stack.apps(inst).get(slug)
        if doc is None:
            raise StackError(404, "Not Found", "Application is not installed")
        return json_response(200, {"data": apps_mod.resource(doc)}, JSONAPI)

    def _app_answer(self, request: Request, doc: dict) -> Response:
        resource = apps_mod.resource(doc)
        if request.accepts("text/event-stream"):
            event = f"event: state\r\ndata: {json.dumps({'data': resource})}\r\n\r\n"
            return Response(200, event.encode(), "text/event-stream")
        return json_response(202, {"data": resource}, JSONAPI)

    def _app_error(self, request: Request, error: StackError) -> Response:
        if request.accepts("text/event-stream"):
            event = f"event: error\r\ndata: {json.dumps(error.detail)}\r\n\r\n"
            return Response(200, event.encode(), "text/event-stream")
        return jsonapi_error(error)

    def apps_install(self, request: Request, inst: dict, slug: str) -> Response:
        self._apps_allowed(request, inst, "POST")
        try:
            doc = self.stack.apps(inst).install(slug, request.param("Source") or None)
        except StackError as error:
            return self._app_error(request, error)
        return self._app_answer(request, doc)

    def apps_update(self, request: Request, inst: dict, slug: str) -> Response:
        self._apps_allowed(request, inst, "PUT")
        try:
            doc, _ = self.stack.apps(inst).update(slug, request.param("Source") or None)
        except StackError as error:
            return self._app_error(request, error)
        return self._app_answer(request, doc)

