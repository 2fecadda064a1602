"""Public routes the ``cozy-stack`` commands use that the double lacked: ``DELETE /apps/:slug``, the
``/konnectors`` routes (cozy-stack's ``web/apps/apps.go`` ``WebappsRoutes``, ``KonnectorRoutes``:
``deleteHandler``, ``listKonnectorsHandler``, ``getHandler``, ``installHandler``, ``updateHandler``),
and ``PUT /settings/passphrase`` with ``force`` from a CLI token (``web/settings/passphrase.go
updatePassphrase``, ``lifecycle.ForceUpdatePassphrase``).

A mixin of the public application (``ROUTES``: method, pattern, handler name), as the double's
``web/`` modules are; it needs the application's ``stack``, ``permissions``, ``forbidden``,
``_app_error`` and ``_app_answer``.
"""

from __future__ import annotations

import json
import os

from . import apps as apps_mod
from . import secret
from .admin import JSONAPI, jsonapi_error
from .httpd import Request, Response, json_response
from .instances import StackError, b64

SETTINGS = "io.cozy.settings"
SESSION_SECRET_LEN = 64  # instance.SessionSecretLen, as the double makes it at creation


class CliRoutes:
    ROUTES = [
        ("DELETE", "/apps/:slug", "apps_uninstall"),
        ("GET", "/konnectors/", "konnectors_list"),
        ("GET", "/konnectors/:slug", "konnectors_show"),
        ("POST", "/konnectors/:slug", "konnectors_install"),
        ("PUT", "/konnectors/:slug", "konnectors_update"),
        ("DELETE", "/konnectors/:slug", "konnectors_uninstall"),
        ("PUT", "/settings/passphrase", "settings_passphrase"),
    ]

    def _allowed(self, request: Request, inst: dict, doctype: str, verb: str):
        perms = self.permissions(request, inst, "files")
        if not perms.allows(doctype, verb):
            raise self.forbidden(request, "files")
        return perms

    def apps_uninstall(self, request: Request, inst: dict, slug: str) -> Response:
        return self._uninstall(request, inst, apps_mod.APPS, slug)

    def konnectors_uninstall(self, request: Request, inst: dict, slug: str) -> Response:
        return self._uninstall(request, inst, apps_mod.KONNECTORS, slug)

    def _uninstall(self, request: Request, inst: dict, doctype: str, slug: str) -> Response:
        """``deleteHandler``: 200 and the manifest as it was."""
        self._allowed(request, inst, doctype, "DELETE")
        doc = self.stack.apps(inst, doctype).uninstall(slug)
        return json_response(200, {"data": apps_mod.resource(doc)}, JSONAPI)

    def konnectors_list(self, request: Request, inst: dict) -> Response:
        self._allowed(request, inst, apps_mod.KONNECTORS, "GET")
        docs = self.stack.apps(inst, apps_mod.KONNECTORS).list()
        return json_response(200, {"data": [apps_mod.resource(d) for d in docs], "meta": {"count": len(docs)}},
                             JSONAPI)

    def konnectors_show(self, request: Request, inst: dict, slug: str) -> Response:
        self._allowed(request, inst, apps_mod.KONNECTORS, "GET")
        doc = self.stack.apps(inst, apps_mod.KONNECTORS).get(slug)
        if doc is None:
            raise StackError(404, "Not Found", "Application is not installed")
        return json_response(200, {"data": apps_mod.resource(doc)}, JSONAPI)

    def konnectors_install(self, request: Request, inst: dict, slug: str) -> Response:
        self._allowed(request, inst, apps_mod.KONNECTORS, "POST")
        try:
            doc = self.stack.apps(inst, apps_mod.KONNECTORS).install(slug, request.param("Source") or None)
        except StackError as error:
            return self._app_error(request, error)
        return self._app_answer(request, doc)

    def konnectors_update(self, request: Request, inst: dict, slug: str) -> Response:
        self._allowed(request, inst, apps_mod.KONNECTORS, "PUT")
        try:
            doc, _ = self.stack.apps(inst, apps_mod.KONNECTORS).update(slug, request.param("Source") or None)
        except StackError as error:
            return self._app_error(request, error)
        return self._app_answer(request, doc)

    def settings_passphrase(self, request: Request, inst: dict) -> Response:
        """Only the forced change from a CLI token (``instances set-passphrase``); the others need a session."""
        perms = self.permissions(request, inst, "files")
        if not perms.allows(SETTINGS, "PUT", whole=True):
            raise self.forbidden(request, "files")
        try:
            args = json.loads(request.body() or b"{}")
        except ValueError as error:
            return jsonapi_error(StackError(400, "Bad Request", str(error)))
        if not isinstance(args, dict) or not args.get("force"):
            return jsonapi_error(StackError(400, "Bad Request", "the double changes a passphrase with force only"))
        new = args.get("new_passphrase") or ""
        if not isinstance(new, str) or not new:
            return jsonapi_error(StackError(400, "Bad Request", "Missing passphrase"))  # ErrMissingPassphrase
        with self.stack.instances.lock:
            doc = self.stack.instances.require(inst["domain"])
            doc["passphrase_hash"] = b64(secret.hash_passphrase(new).encode())
            doc["password_defined"] = True
            doc["session_secret"] = b64(os.urandom(SESSION_SECRET_LEN))  # setPassphraseKdfAndSecret
            self.stack.instances.save(doc)
        return Response(204)
