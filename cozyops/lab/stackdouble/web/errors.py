"""The error bodies of the public API (cozy-stack's web/errors/errors.go and the families of
files-data §0): JSON:API errors for files, echo's ``code=..., message=...`` and CouchDB's body
for data."""

from __future__ import annotations

import html

from ..httpd import HTTPError, Request, Response, json_response, text_response


def http_error(request: Request, status: int, message: str, json_message=None, headers=None) -> Response:
    """errors.go HTMLErrorHandler, for an echo HTTPError: ``{"error": <message>}`` when the Accept
    header has application/json, an HTML page when it has text/html, else the message as text;
    HEAD: no body. ``json_message``: what the message marshals to in JSON when it is not a string
    (an error value such as instance.ErrNotFound marshals as ``{}``)."""
    if request.method == "HEAD":
        return Response(status, headers=headers)
    if request.accepts("application/json"):
        return json_response(status, {"error": message if json_message is None else json_message}, headers=headers)
    if request.accepts("text/html"):
        page = f"<!DOCTYPE html><html><body><h1>{status}</h1><p>{html.escape(message)}</p></body></html>\n"
        return Response(status, page.encode(), "text/html; charset=UTF-8", headers)
    return text_response(status, message, headers=headers)


def files_auth_error(request: Request, status: int, message: str, headers=None) -> HTTPError:
    """The permission middleware's echo errors (401, 403, 400), answered by HTMLErrorHandler."""
    return HTTPError(http_error(request, status, message, headers=headers))


def data_echo_error(status: int, message: str, headers=None) -> HTTPError:
    return HTTPError(json_response(status, {"error": f"code={status}, message={message}"}, headers=headers))


def data_couch_error(status: int, error: str, reason: str) -> HTTPError:
    return HTTPError(json_response(status, {"ok": False, "status": str(status), "error": error, "reason": reason}))


def data_typed_error(status: int, title: str, detail: str) -> HTTPError:
    return HTTPError(json_response(status, {"error": f"{title}({status}): {detail}"}))

