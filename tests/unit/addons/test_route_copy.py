"""The route addon's request copy for failover: as independent as mitmproxy's own copy."""

from mitmproxy import http
from mitmproxy.test import tutils

from stickyroute.addons.route import copy_request


def _request() -> http.Request:
    req = tutils.treq(host="api.openai.com", port=443, scheme=b"https", path=b"/v1/responses",
                      method=b"POST", content=b'{"model":"m"}')
    req.headers["authorization"] = "Bearer sk-client"
    req.trailers = http.Headers(x_trailer="t")
    return req


def test_copy_has_the_state_mitmproxys_copy_has() -> None:
    req = _request()
    assert copy_request(req).get_state() == req.copy().get_state()
    assert type(copy_request(req)) is http.Request


def test_edits_of_the_original_leave_the_copy_alone() -> None:
    req = _request()
    kept = copy_request(req)
    req.headers["authorization"] = "Bearer sk-account"
    req.headers["x-new"] = "1"
    req.trailers["x-trailer"] = "changed"  # type: ignore[index]
    req.content = b'{"model":"m","prompt_cache_key":"k"}'
    req.host, req.path = "example.com", "/other"
    assert kept.headers["authorization"] == "Bearer sk-client"
    assert "x-new" not in kept.headers
    assert kept.trailers is not None and kept.trailers["x-trailer"] == "t"
    assert kept.content == b'{"model":"m"}'
    assert (kept.host, kept.path) == ("api.openai.com", "/v1/responses")


def test_edits_of_the_copy_leave_the_original_alone() -> None:
    req = _request()
    kept = copy_request(req)
    kept.headers["authorization"] = "Bearer other"
    kept.content = b"{}"
    assert req.headers["authorization"] == "Bearer sk-client"
    assert req.content == b'{"model":"m"}'
