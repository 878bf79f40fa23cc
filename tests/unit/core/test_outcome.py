"""core/outcome.py: what an upstream answer means for its account (kind, reset time)."""

import email.utils

import pytest

from stickyroute.core.outcome import Kind, classify, parse_duration, reset_time

NOW = 1_700_000_000.0


@pytest.mark.parametrize("text, seconds", [
    ("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0s", 0.0),
    ("17", 17.0), ("2.5", 2.5), ("abc", None), ("1x", None), ("", None),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("headers, delay", [
    ({"retry-after": "20"}, 20.0),
    ({"retry-after": "1.5"}, 1.5),
    ({"retry-after": email.utils.formatdate(NOW + 90, usegmt=True)}, 90.0),
    ({"retry-after-ms": "250"}, 0.25),
    ({"retry-after-ms": "250", "retry-after": "20"}, 0.25),  # the precise one wins
    ({"retry-after": "soon", "x-ratelimit-reset-requests": "6m0s"}, 360.0),
    ({"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "20ms"}, 0.02),
    ({"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s",
      "x-ratelimit-remaining-tokens": "0", "x-ratelimit-remaining-requests": "10"}, 360.0),
    ({"anthropic-ratelimit-requests-reset": "2023-11-14T22:14:20Z",
      "anthropic-ratelimit-requests-remaining": "0"}, 1700000060.0 - NOW),
    ({"anthropic-ratelimit-tokens-reset": "2023-11-14T22:13:50+00:00"}, 30.0),
    ({}, None),
    ({"retry-after": "garbage"}, None),
])
def test_reset_time_forms(headers, delay):
    got = reset_time(headers, NOW)
    assert (got is None) if delay is None else got == pytest.approx(NOW + delay)


def test_reset_time_is_capped():
    assert reset_time({"retry-after": "99999999"}, NOW) == NOW + 8 * 86400


@pytest.mark.parametrize("status, body, kind", [
    (200, None, Kind.OK),
    (429, {"error": {"type": "rate_limit_error", "message": "x"}}, Kind.RATE_LIMITED),
    (429, {"error": {"code": "insufficient_quota", "type": "insufficient_quota"}}, Kind.QUOTA),
    (429, {"error": {"type": "usage_limit_reached", "resets_in_seconds": 100}}, Kind.QUOTA),
    (401, {"error": {"type": "invalid_request_error", "code": "invalid_api_key"}}, Kind.REVOKED),
    (403, {"type": "error", "error": {"type": "permission_error"}}, Kind.REVOKED),
    (500, {"error": {"type": "server_error"}}, Kind.OVERLOADED),
    (502, b"<html>", Kind.OVERLOADED),
    (529, {"type": "error", "error": {"type": "overloaded_error"}}, Kind.OVERLOADED),
    (400, {"error": {"type": "invalid_request_error"}}, Kind.NEUTRAL),
    (404, None, Kind.NEUTRAL),
    (None, None, Kind.CONNECTION),
])
def test_classify(status, body, kind):
    assert classify(status, {}, body, NOW).kind is kind


def test_quota_reset_from_codex_body():
    o = classify(429, {}, {"error": {"type": "usage_limit_reached", "resets_in_seconds": 100}},
                 NOW)
    assert o.reset == NOW + 100 and o.reason == "quota exhausted (429 usage_limit_reached)"
    o = classify(429, {}, {"error": {"type": "usage_limit_reached", "resets_at": NOW + 5}}, NOW)
    assert o.reset == NOW + 5


def test_reason_never_copies_free_text():
    body = {"error": {"code": "Bearer sk-secret stuff", "message": "key sk-secret is bad"}}
    o = classify(401, {"retry-after": "sk-secret"}, body, NOW)
    assert "sk-secret" not in (o.reason or "")


