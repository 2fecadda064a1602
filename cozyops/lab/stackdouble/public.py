"""The public API on host:port, routed by the Host header (cozy-stack's web/routing.go;
cozy-stack.md §4.1; files-data reference).

``/version`` and ``/status`` answer on any host. An app host (``drive.alice.example.org`` nested,
``alice-drive.example.org`` flat) answers for its instance and app; any other host is looked up
as an instance's domain or alias (an old domain gets a 308), then the routes of that instance,
one group per package of cozy-stack's ``web/`` (the ``web`` package here). A blocked instance
keeps /apps, /konnectors and /settings open (``mwsNotBlocked``); its other routes answer as
``middlewares.CheckInstanceBlocked`` does.
"""

from __future__ import annotations

import html
from urllib.parse import quote

from .admin import jsonapi_error, version_body
from .cliroutes import CliRoutes
from .couch import CouchError
from .httpd import App, Request, Response, Router, json_response, text_response
from .instances import StackError, from_couch
from .stack import Stack
from .web.apps import Apps
from .web.data import Data, Replication
from .web.errors import data_couch_error, data_typed_error, files_auth_error, http_error
from .web.files import Files
from .web.middlewares import Middlewares
from .web.move import Move
from .web.permissions import PermissionsRoutes
from .web.references import References
from .web.settings import Settings

# web/routing.go: groups that a blocked instance keeps open (mwsNotBlocked).
NOT_BLOCKED = ("/apps/", "/konnectors/", "/settings/", "/compat/")
# Groups behind the HTML default of content negotiation (/, /auth).
HTML_GROUPS = ("/auth/",)


# echo's router (routeMethods.updateAllowHeader): the order of the methods in an Allow header.
ECHO_METHODS = ("CONNECT", "DELETE", "GET", "HEAD", "PATCH", "POST", "PROPFIND", "PUT", "TRACE", "REPORT")


class PublicApp(Middlewares, References, Files, Replication, Data, Settings, PermissionsRoutes, Apps, CliRoutes,
                Move, App):
    name = "public"

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.router = Router()
        for group in (References, Files, Replication, Data, Settings, PermissionsRoutes, Apps, CliRoutes, Move):
            for methods, pattern, handler in group.ROUTES:
                self.router.add(methods, pattern, getattr(self, handler))
        self.router.add("GET", "/auth/login", self.login_page)
        self.router.add("GET", "/", self.home)

    def handle(self, request: Request) -> Response:
        path = request.raw_path
        if path == "/version":
            if request.method not in ("GET", "HEAD"):
                return text_response(405, "Method Not Allowed")
            return json_response(200, version_body())
        if path == "/status":
            return self.status(request)
        host = request.host
        try:
            parent, slug = self.split_host(host)
            known = self.stack.instances.all()  # read once for the look-ups below
            if slug:
                inst = self.stack.instances.get(parent, docs=known)
                if inst is not None:
                    # SetupAppsHandler: CheckInstanceBlocked, with HTML as the default offer.
                    blocked = self.blocked_response(request, inst, True) if inst.get("blocked") else None
                    return blocked or self.serve_app(request, inst, slug)
            inst = self.stack.instances.get(host, docs=known)
            if inst is None:
                old = self.stack.instances.by_old_domain(host, docs=known)
                if old is not None:
                    return Response(308, headers=[("Location", f"https://{old['domain']}{request.target}")])
                return http_error(request, 404, "Instance not found", json_message={})
            handler, params, known = self.router.match(request.method, path)
            if handler is None:
                if not known:
                    return http_error(request, 404, "Not Found")
                # echo's methodNotAllowedHandler: Allow lists OPTIONS then the path's methods.
                allowed = [m for m in ECHO_METHODS if m in self.router.methods_for(path)]
                return http_error(request, 405, "Method Not Allowed",
                                  headers=[("Allow", ", ".join(["OPTIONS", *allowed]))])
            request.vars["instance"] = inst
            if inst.get("blocked") and not (path + "/").startswith(NOT_BLOCKED):
                html_default = path == "/" or (path + "/").startswith(HTML_GROUPS)
                blocked = self.blocked_response(request, inst, html_default)
                if blocked is not None:
                    return blocked
            return handler(request, inst, **params)
        except StackError as error:
            if path.startswith("/data/"):
                return data_typed_error(error.status, error.title, error.detail).response
            return jsonapi_error(error)
        except CouchError as error:
            if path.startswith("/data/"):
                return data_couch_error(error.status or 500, error.error, error.reason).response
            return jsonapi_error(from_couch(error))

    def split_host(self, host: str) -> tuple[str, str]:
        """§4.1 ``SplitCozyHost``: nested ``<app>.<instance>``; flat ``<user>-<app>.<rest>`` on the first ``-``."""
        first, dot, rest = host.partition(".")
        if not dot:
            return host, ""
        if self.stack.flat:
            user, dash, app = first.partition("-")
            return (f"{user}.{rest}", app) if dash else (host, "")
        return rest, first

    def status(self, request: Request) -> Response:
        try:
            self.stack.couch.ok("GET", "/")
            couch = "healthy"
        except CouchError:
            couch = "unhealthy"
        fs = "healthy" if self.stack.fs_root.is_dir() else "unhealthy"
        ok = couch == fs == "healthy"
        body = {"cache": "healthy", "couchdb": couch, "fs": fs, "status": "OK" if ok else "KO",
                "message": "OK" if ok else "KO"}
        return json_response(200 if ok else 502, body)

    # --- app subdomains and pages
    def serve_app(self, request: Request, inst: dict, slug: str) -> Response:
        app = self.stack.apps(inst).get(slug)
        if app is None or app.get("state") != "ready":
            return files_auth_error(request, 404, "Application not found").response
        # No session in the double: every app page asks for the login, as cozy-stack does without one.
        app_url = f"https://{request.host}{request.target}"
        location = f"https://{inst['domain']}/auth/login?redirect={quote(app_url, safe='')}"
        return Response(302, headers=[("Location", location)])

    def login_page(self, request: Request, inst: dict) -> Response:
        name = html.escape(inst["domain"])
        page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Log in to {name}</title></head>"
                f"<body data-cozy-domain=\"{name}\"><h1>{name}</h1><form method=\"post\" action=\"/auth/login\">"
                "<input type=\"password\" name=\"passphrase\"></form></body></html>\n")
        return Response(200, page.encode(), "text/html; charset=UTF-8")

    def home(self, request: Request, inst: dict) -> Response:
        return Response(302, headers=[("Location", f"https://{inst['domain']}/auth/login")])

