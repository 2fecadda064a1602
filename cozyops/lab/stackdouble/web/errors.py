"""The error bodies of the public API (cozy-stack's web/errors/errors.go and the families of
files-data §0): JSON:API errors for files, echo's ``code=..., message=...`` and CouchDB's body
for data."""

from __future__ import annotations

import html

from ..httpd import HTTPError, Request, Response, json_response, text_response


def files_auth_error(request: Request, status: int, message: str, headers=None) -> HTTPError:
    if request.accepts("application/json"):
        return HTTPError(json_response(status, {"error": message}, headers=headers))
    if request.accepts("text/html"):
        page = f"<!DOCTYPE html><html><body><h1>{status}</h1><p>{html.escape(message)}</p></body></html>\n"
        return HTTPError(Response(status, page.encode(), "text/html; charset=UTF-8", headers))
    return HTTPError(text_response(status, message, headers=headers))


def data_echo_error(status: int, message: str, headers=None) -> HTTPError:
    return HTTPError(json_response(status, {"error": f"code={status}, message={message}"}, headers=headers))


def data_couch_error(status: int, error: str, reason: str) -> HTTPError:
    return HTTPError(json_response(status, {"ok": False, "status": str(status), "error": error, "reason": reason}))


def data_typed_error(status: int, title: str, detail: str) -> HTTPError:
    return HTTPError(json_response(status, {"error": f"{title}({status}): {detail}"}))

