"""The double's _bulk_docs answer in the request's order, as CouchDB gives it (pouchdb-server may not)."""

from __future__ import annotations

import pytest

from cozyops.lab.stackdouble.web.data import in_request_order

A1 = {"ok": True, "id": "a1", "rev": "1-x"}
A2 = {"ok": True, "id": "a2", "rev": "1-y"}


@pytest.mark.parametrize(("body", "results", "expected"), [
    ({"docs": [{"_id": "a1"}, {"_id": "a2"}]}, [A2, A1], [A1, A2]),  # put back in order
    ({"docs": [{"_id": "a1"}, {"_id": "a2"}]}, [A1, A2], [A1, A2]),
    ({"docs": [{"_id": "a1"}, {"name": "no id"}]}, [A2, A1], [A2, A1]),  # unmatchable: as it came
    ({"docs": [{"_id": "a1"}, {"_id": "a1"}]}, [A1, A1], [A1, A1]),
    ({"docs": [{"_id": "a1"}]}, {"error": "bad_request"}, {"error": "bad_request"}),
    ({"docs": [{"_id": "a1"}, {"_id": "a3"}]}, [A2, A1], [A2, A1]),  # ids differ: as it came
])
def test_bulk_docs_results_follow_the_request(body, results, expected):
    assert in_request_order(body, results) == expected
