"""cozy-stack's three error shapes become one StackError (files/data reference, section 0)."""

from __future__ import annotations

import json

import pytest
import requests

from cozyops.stack.http import error_from
from cozyops.stack.public import md5_base64


def response(status: int, body: str | bytes, content_type: str = "application/json") -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer._content = body.encode() if isinstance(body, str) else body
    answer.headers["Content-Type"] = content_type
    answer.reason = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict"}.get(status, "")
    return answer


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        # JSON:API (admin API, /files): cozy-stack.md §2.1, files-data §0
        (409, json.dumps({"errors": [{"status": "409", "title": "Conflict", "detail": "Instance already exists",
                                      "source": {}}]}), ("Conflict", "Instance already exists")),
        # CouchDB-style flat JSON (/data): files-data §0 and §3
        (404, json.dumps({"ok": False, "status": "404", "error": "not_found", "reason": "missing"}),
         ("not_found", "missing")),
        (403, json.dumps({"error": "code=403, message=Forbidden"}), ("code=403, message=Forbidden", "")),
        # a blocked instance: a bare list of errors (cozy-stack web/middlewares/instance.go warningOrBlocked)
        (402, json.dumps([{"status": "402", "title": "Blocked", "code": "UNKNOWN",
                           "detail": "The Twake is blocked for an unknown reason"}]),
         ("Blocked", "The Twake is blocked for an unknown reason")),
        # plain text (Basic auth): cozy-stack.md §2.1
        (401, "missing basic auth", ("Unauthorized", "missing basic auth")),
        (403, "bad passphrase\n", ("Forbidden", "bad passphrase")),
    ],
)
def test_each_error_shape(status, body, expected):
    error = error_from(response(status, body), "somewhere")
    assert (error.status, error.title, error.detail) == (status, *expected)
    assert str(error).startswith(f"somewhere: {status} ")


def test_content_md5_is_base64_of_the_digest():
    assert md5_base64(b"") == "1B2M2Y8AsgTpgAmY7PhCfg=="
