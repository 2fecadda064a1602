"""Tokens, permissions and blocked instances (cozy-stack's web/middlewares/permissions.go,
web/middlewares/instance.go; files-data §0, §4)."""

from __future__ import annotations

import base64

from .. import tokens
from ..httpd import HTTPError, Request, Response, json_response
from ..instances import StackError
from .errors import data_echo_error, files_auth_error


class Permissions:
    """A token's rules and its kind (permission.TypeCLI ``cli``, TypeWebapp ``app``, TypeKonnector ``konnector``)."""

    def __init__(self, rules: list[tokens.Rule], kind: str = "cli") -> None:
        self.rules = rules
        self.kind = kind

    def allows(self, doctype: str, verb: str, ids: list[str] | None = None, whole: bool = False) -> bool:
        for rule in self.rules:
            if not rule.allows(doctype, verb):
                continue
            if not rule.values:
                return True
            if not whole and ids and set(ids) & set(rule.values):
                return True
        return False



class Middlewares:
    """Mixin of PublicApp: the token of a request and what it allows."""

    def permissions(self, request: Request, inst: dict, family: str) -> Permissions:
        # GetRequestToken: the schemes are matched as written ("Bearer ", "Basic "), else the
        # bearer_token query parameter.
        token = None
        header = request.header("Authorization") or ""
        if header.startswith("Bearer "):
            token = header[7:]
        elif header.startswith("Basic "):
            try:
                token = base64.b64decode(header[6:].strip()).decode().partition(":")[2]
            except ValueError:
                token = None
        if not token:
            token = request.param("bearer_token")
        if not token:
            raise self.auth_error(request, family, 401, "No token in request")
        try:
            claims = tokens.verify(token, self.stack.secrets_of(inst), inst["domain"],
                                   old_domain=inst.get("old_domain") or "")
        except tokens.TokenError as error:
            # ParseJWT: every refused token gets a WWW-Authenticate header.
            challenge = 'Bearer error="invalid_token"'
            if error.expired:
                challenge += ' error_description="The access token expired"'
            raise self.auth_error(request, family, error.status, error.message,
                                  [("WWW-Authenticate", challenge)]) from None
        audience = claims.get("aud")
        if audience == "cli":
            try:
                return Permissions(tokens.parse_scope(str(claims.get("scope") or "")))
            except ValueError:
                raise self.auth_error(request, family, 400, "Permission scope is empty or malformed") from None
        if audience in ("app", "konn"):
            # The double's apps ask for no permission in their manifest.
            return Permissions([], "app" if audience == "app" else "konnector")
        if audience == "access":
            # ParseJWT: an OAuth token whose client is gone (the double has no OAuth client).
            raise self.auth_error(request, family, 400, "Invalid JWT token",
                                  [("WWW-Authenticate", 'Bearer error="invalid_token"')])
        # ParseJWT's default case, the audience printed as Go prints a []string.
        raise self.auth_error(request, family, 400, f"Unrecognized token audience [{audience}]")

    def auth_error(self, request: Request, family: str, status: int, message: str, headers=None) -> HTTPError:
        if family == "data":
            return data_echo_error(status, message, headers)
        return files_auth_error(request, status, message, headers)

    def forbidden(self, request: Request, family: str) -> HTTPError:
        return self.auth_error(request, family, 403, "Forbidden")


    # --- blocked instances (web/middlewares/instance.go CheckInstanceBlocked, handleBlockedInstance)
    def blocked_response(self, request: Request, inst: dict, html_default: bool = False) -> Response | None:
        """The answer to a request on a blocked instance, or None when it goes on.

        A CLI token goes through; LOGIN_FAILED gets the HTML page; IMPORTING and MOVING let
        /move/ through and answer JSON ``{"error": <the payment message>}`` (as the source does) or
        a redirection to /move/importing; PAYMENT_FAILED is 402, any other reason 503, with
        the warnings (none in the double: one ``Blocked`` error, code UNKNOWN) as a JSON array."""
        if self._cli_token(request, inst):
            return None
        reason = inst.get("blocking_reason") or ""
        wants_json = _negotiate(request, html_default)
        if reason == "LOGIN_FAILED":
            return _blocked_page(503, inst, BLOCKED_MESSAGES["LOGIN_FAILED"])
        if reason in ("IMPORTING", "MOVING"):
            if request.raw_path.startswith("/move/"):
                return None
            if wants_json:
                return json_response(503, {"error": BLOCKED_MESSAGES["PAYMENT_FAILED"]})
            return Response(302, headers=[("Location", f"https://{inst['domain']}/move/importing")])
        status = 402 if reason == "PAYMENT_FAILED" else 503
        if wants_json:
            return json_response(status, [{"status": str(status), "title": "Blocked", "code": "UNKNOWN",
                                           "detail": BLOCKED_MESSAGES["UNKNOWN"]}])
        shown = BLOCKED_MESSAGES["PAYMENT_FAILED"] if reason == "PAYMENT_FAILED" else reason
        return _blocked_page(status, inst, shown)

    def _cli_token(self, request: Request, inst: dict) -> bool:
        try:
            return self.permissions(request, inst, "files").kind == "cli"
        except (HTTPError, StackError):
            return False


# assets/locales/en.po: the messages of model/instance/tos.go's blocking reasons.
BLOCKED_MESSAGES = {
    "LOGIN_FAILED": "The Twake was blocked because of too many login attempts",
    "PAYMENT_FAILED": "The Twake requires a payment",
    "IMPORTING": "The Twake is importing data",
    "MOVING": "Moving in progress",
    "UNKNOWN": "The Twake is blocked for an unknown reason",
}
JSON_TYPES = ("application/vnd.api+json", "application/json")


def _negotiate(request: Request, html_default: bool) -> bool:
    """middlewares.Accept: the offer the Accept header names first (JSON:API, JSON, HTML, text);
    without an Accept header, the group's default (JSON:API for the API, HTML for / and /auth).
    True for JSON. (Quality values are not weighed.)"""
    accept = (request.header("Accept") or "").lower()
    best, where = None, len(accept) + 1
    for offer in (*JSON_TYPES, "text/html", "text/plain"):
        at = accept.find(offer)
        if at != -1 and at < where:
            best, where = offer, at
    if best is None:
        # No Accept header: the group's default. A wildcard matches the first offer (JSON:API),
        # text/* the first text one (HTML): httputil.NegotiateContentType.
        if not accept.strip():
            return not html_default
        return "text/*" not in accept
    return best in JSON_TYPES


def _blocked_page(status: int, inst: dict, reason: str) -> Response:
    import html

    page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(inst['domain'])}</title>"
            f"</head><body><h1>Blocked</h1><p>{html.escape(reason)}</p></body></html>\n")
    return Response(status, page.encode(), "text/html; charset=UTF-8")
