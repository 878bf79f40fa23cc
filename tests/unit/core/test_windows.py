import pytest

from stickyroute.core import windows as wm
from stickyroute.core.health import Health, State
from stickyroute.core.outcome import Kind, classify, usage_limit_reset
from stickyroute.core.windows import (
    Credits,
    Drain,
    Reading,
    Status,
    Tightest,
    Window,
    WindowTable,
    from_codex_event,
    from_headers,
)

NOW = 1_700_000_000.0
CODEX = {
    "x-codex-primary-used-percent": "95.5",
    "x-codex-primary-window-minutes": "300",
    "x-codex-primary-reset-at": str(int(NOW) + 3600),
    "x-codex-secondary-used-percent": "40",
    "x-codex-secondary-window-minutes": "10080",
    "x-codex-secondary-reset-after-seconds": "86400",
}
UNIFIED = {
    "anthropic-ratelimit-unified-status": "allowed_warning",
    "anthropic-ratelimit-unified-reset": str(int(NOW) + 1800),
    "anthropic-ratelimit-unified-5h-utilization": "0.95",
    "anthropic-ratelimit-unified-5h-reset": str(int(NOW) + 1800),
    "anthropic-ratelimit-unified-5h-status": "allowed_warning",
    "anthropic-ratelimit-unified-7d-utilization": "0.2",
    "anthropic-ratelimit-unified-7d-reset": str(int(NOW) + 5 * 86400),
    "anthropic-ratelimit-unified-7d-status": "allowed",
    "anthropic-ratelimit-unified-7d_oi-utilization": "0.5",
    "anthropic-ratelimit-unified-overage-utilization": "0.9",  # pay-as-you-go, not a window
    "anthropic-ratelimit-unified-representative-claim": "five_hour",
}


def by_key(reading: Reading) -> dict[tuple[str, int], Window]:
    return {w.key: w for w in reading.windows}


# ---- reading headers ------------------------------------------------------------------
def test_codex_headers_keyed_by_length_with_either_reset_form():
    got = by_key(from_headers(CODEX, NOW))
    assert got == {("", 300): Window(300, 95.5, NOW + 3600),
                   ("", 10080): Window(10080, 40.0, NOW + 86400)}


def test_a_weekly_primary_is_the_weekly_window():
    got = from_headers({"x-codex-primary-used-percent": "12",
                        "x-codex-primary-window-minutes": "10080"}, NOW)
    assert [w.key for w in got.windows] == [("", 10080)]


def test_other_codex_families_carry_their_limit_name():
    got = by_key(from_headers({
        **CODEX,
        "x-codex-bengalfox-primary-used-percent": "80",
        "x-codex-bengalfox-primary-window-minutes": "300",
        "x-codex-bengalfox-limit-name": "gpt-5.2-codex-sonic",
        "x-codex-other-primary-used-percent": "10",
        "x-codex-other-limit-name": "\x1b[31m sk-secret\nvalue",  # not a name: the family id
    }, NOW))
    assert got["gpt-5.2-codex-sonic", 300].used_percent == 80
    assert ("codex_other", 300) in got
    assert all("sk-secret" not in w.limit for w in got.values())


def test_codex_credits():
    r = from_headers({"x-codex-credits-has-credits": "True", "x-codex-credits-unlimited": "false",
                      "x-codex-credits-balance": "12.50"}, NOW)
    assert r.credits == Credits(True, False, "12.50") and not r.windows
    assert from_headers({"x-codex-credits-has-credits": "maybe"}, NOW).credits is None


def test_anthropic_unified_windows():
    r = from_headers(UNIFIED, NOW)
    got = by_key(r)
    assert got["", 300] == Window(300, 95.0, NOW + 1800)
    assert got["", 10080] == Window(10080, 20.0, NOW + 5 * 86400)
    assert got["oi", 10080].used_percent == 50.0
    assert len(got) == 3 and r.rejected_until is None


def test_anthropic_rejected_names_the_reset():
    r = from_headers({**UNIFIED, "anthropic-ratelimit-unified-status": "rejected",
                      "anthropic-ratelimit-unified-5h-status": "rejected",
                      "anthropic-ratelimit-unified-5h-utilization": "1.0"}, NOW)
    assert r.rejected_until == NOW + 1800
    assert by_key(r)["", 300].rejected


def test_api_key_limits_are_one_per_minute_window():
    r = from_headers({"x-ratelimit-remaining-requests": "50", "x-ratelimit-limit-requests": "100",
                      "x-ratelimit-remaining-tokens": "1000", "x-ratelimit-limit-tokens": "100000",
                      "x-ratelimit-reset-tokens": "6s"}, NOW)
    assert r.windows == (Window(1, 99.0, NOW + 6),)
    r = from_headers({"anthropic-ratelimit-requests-remaining": "45",
                      "anthropic-ratelimit-requests-limit": "50",
                      "anthropic-ratelimit-requests-reset": "2023-11-14T22:14:20Z"}, NOW)
    assert r.windows == (Window(1, 10.0, 1700000060.0),)


@pytest.mark.parametrize("headers", [
    {},
    {"content-type": "text/plain"},
    {"x-codex-primary-used-percent": "nan"},
    {"x-codex-primary-used-percent": "inf", "x-codex-primary-window-minutes": "-5"},
    {"x-codex-primary-used-percent": "", "x-codex-secondary-used-percent": "x"},
    {"anthropic-ratelimit-unified-5h-utilization": "lots"},
    {"anthropic-ratelimit-unified-overage-utilization": "0.5"},
    {"x-ratelimit-remaining-requests": "1", "x-ratelimit-limit-requests": "0"},
])
def test_nothing_usable_reads_as_empty(headers):
    assert not from_headers(headers, NOW)


def test_odd_values_are_clamped_never_raised():
    r = from_headers({"x-codex-primary-used-percent": "250", "x-codex-primary-window-minutes":
                      "99999999", "x-codex-primary-reset-at": "99999999999"}, NOW)
    (w,) = r.windows
    assert w.used_percent == 100 and w.minutes == 300  # a silly length: the default
    assert w.resets_at == NOW + 8 * 86400 and w.rejected


# ---- the codex.rate_limits event --------------------------------------------------------
EVENT = {"type": "codex.rate_limits", "plan_type": "pro", "rate_limits": {
    "allowed": True, "limit_reached": False,
    "primary": {"used_percent": 7, "window_minutes": 300, "reset_after_seconds": 13168,
                "reset_at": NOW + 13168},
    "secondary": {"used_percent": 29, "window_minutes": 10080, "reset_after_seconds": 434962}},
    "credits": {"has_credits": False, "unlimited": False, "balance": None},
    "code_review_rate_limits": None}


def test_codex_event():
    r = from_codex_event(EVENT, NOW)
    assert r.windows == (Window(300, 7.0, NOW + 13168), Window(10080, 29.0, NOW + 434962))
    assert r.credits == Credits(False, False, None) and r.rejected_until is None


def test_codex_event_limit_reached_waits_for_the_used_up_window():
    event = {**EVENT, "rate_limits": {**EVENT["rate_limits"], "limit_reached": True,
                                      "allowed": False,
                                      "primary": {"used_percent": 100, "window_minutes": 300,
                                                  "reset_at": NOW + 600}}}
    assert from_codex_event(event, NOW).rejected_until == NOW + 600


def test_codex_event_of_another_family():
    r = from_codex_event({**EVENT, "metered_limit_name": "codex-bengalfox"}, NOW)
    assert {w.limit for w in r.windows} == {"codex_bengalfox"}


@pytest.mark.parametrize("event", [
    None, "text", [], {"type": "response.created"}, {"type": "codex.rate_limits"},
    {"type": "codex.rate_limits", "rate_limits": "x"},
    {"type": "codex.rate_limits", "rate_limits": {"primary": {"used_percent": "lots"}}},
    {"type": "codex.rate_limits", "rate_limits": {"primary": {"used_percent": True}}},
    {"type": "codex.rate_limits", "metered_limit_name": 5, "credits": {"has_credits": "y"}},
])
def test_codex_event_junk_reads_as_empty(event):
    assert not from_codex_event(event, NOW)


# ---- the table -----------------------------------------------------------------------
def test_draining_starts_and_stops_once_each():
    t = WindowTable(drain_at=90)
    change = t.record("a", from_headers(CODEX, NOW), NOW)
    assert change == Drain("a", True, Window(300, 95.5, NOW + 3600))
    assert t.record("a", from_headers(CODEX, NOW + 1), NOW + 1) is None  # still: no new line
    assert t.draining("a", NOW + 1) and t.state("a", NOW + 1) is Status.DRAINING
    assert not t.draining("b", NOW)
    lower = {**CODEX, "x-codex-primary-used-percent": "50"}
    assert t.record("a", from_headers(lower, NOW + 2), NOW + 2) == Drain("a", False, None)


def test_a_window_that_reset_reads_empty_and_stops_draining():
    t = WindowTable()
    t.record("a", from_headers(CODEX, NOW), NOW)
    after = NOW + 3600
    assert not t.draining("a", after)
    views = {v.minutes: v for v in t.windows("a", after)}
    assert views[300].used_percent == 0 and views[300].status is Status.OK
    assert views[300].resets_at is None and views[10080].used_percent == 40
    # the next answer after the reset is where the "stopped draining" line comes from
    assert t.record("a", from_headers({}, after), after) is None  # an empty reading: nothing
    fresh = {**CODEX, "x-codex-primary-used-percent": "1",
             "x-codex-primary-reset-at": str(int(after) + 18000)}
    assert t.record("a", from_headers(fresh, after), after) == Drain("a", False, None)


def test_a_window_without_reset_time_holds_for_its_length():
    t = WindowTable()
    t.record("a", Reading((Window(300, 95, None),)), NOW)
    assert t.draining("a", NOW + 300 * 60 - 1) and not t.draining("a", NOW + 300 * 60)


def test_only_account_wide_windows_of_an_hour_or_more_drain():
    t = WindowTable(drain_at=90)
    t.record("api", Reading((Window(1, 99, NOW + 30),)), NOW)  # per-minute: back in a minute
    t.record("named", Reading((Window(300, 99, NOW + 60, limit="gpt-sonic"),)), NOW)
    assert not t.draining("api", NOW) and not t.draining("named", NOW)
    assert t.tightest("api", NOW) == Tightest(99, NOW + 30, 1)  # placement still sees it
    assert t.tightest("named", NOW) is None
    assert [v.status for v in t.windows("named", NOW)] == [Status.DRAINING]


def test_drain_threshold_follows_the_option():
    t = WindowTable(drain_at=96)
    t.record("a", from_headers(CODEX, NOW), NOW)
    assert not t.draining("a", NOW)
    t.drain_at = 95
    assert t.draining("a", NOW)


def test_statuses_and_limited():
    t = WindowTable(drain_at=90)
    t.record("a", from_headers({**UNIFIED, "anthropic-ratelimit-unified-status": "rejected",
                                "anthropic-ratelimit-unified-5h-status": "rejected"}, NOW), NOW)
    views = t.windows("a", NOW)
    assert [(v.limit, v.minutes, v.status) for v in views] == [
        ("", 300, Status.LIMITED), ("", 10080, Status.OK), ("oi", 10080, Status.OK)]
    assert t.limited("a", NOW) and t.state("a", NOW) is Status.LIMITED
    assert not t.limited("a", NOW + 1800)
    assert views[0].as_dict() == {"minutes": 300, "used_percent": 95.0,
                                  "resets_at": NOW + 1800, "status": "limited", "limit": ""}


def test_tightest_takes_the_fullest_account_wide_window():
    t = WindowTable()
    assert t.tightest("a", NOW) is None
    t.record("a", from_headers(UNIFIED, NOW), NOW)
    assert t.tightest("a", NOW) == Tightest(95.0, NOW + 1800, 300)
    assert t.tightest("a", NOW + 1800) == Tightest(20.0, NOW + 5 * 86400, 10080)


def test_windows_per_account_are_bounded_oldest_first():
    t = WindowTable()
    for i in range(wm.MAX_WINDOWS + 5):
        t.record("a", Reading((Window(60 + i, 1, NOW + 60, limit=f"f{i}"),)), NOW)
    limits = {v.limit for v in t.windows("a", NOW)}
    assert len(limits) == wm.MAX_WINDOWS and "f0" not in limits and f"f{wm.MAX_WINDOWS + 4}" in limits


def test_credits_seen_any_and_forget():
    t = WindowTable()
    assert not t.seen_any
    t.record("a", Reading(credits=Credits(True, False, None)), NOW)
    assert t.credits("a") == Credits(True, False, None) and not t.seen_any
    t.record("b", from_headers(CODEX, NOW), NOW)
    assert t.seen_any
    t.forget(["b"])
    assert t.credits("a") is None and len(t) == 1


# ---- a used-up window cools the account until it resets --------------------------------
def test_anthropic_rejected_429_is_a_quota_until_the_window_resets():
    headers = {**UNIFIED, "anthropic-ratelimit-unified-status": "rejected",
               "retry-after": "30"}
    o = classify(429, headers, {"type": "error", "error": {"type": "rate_limit_error"}}, NOW)
    assert o.kind is Kind.QUOTA and o.reset == NOW + 1800
    assert o.reason == "usage limit reached (429 rate_limit_error)"
    h = Health()
    assert h.record("a", o, NOW) == (State.HEALTHY, State.COOLING)
    assert h.describe("a", NOW).until == NOW + 1800


def test_rejected_without_a_unified_reset_waits_for_the_rejected_window():
    headers = {"anthropic-ratelimit-unified-status": "rejected",
               "anthropic-ratelimit-unified-7d-status": "rejected",
               "anthropic-ratelimit-unified-7d-reset": str(int(NOW) + 86400),
               "anthropic-ratelimit-unified-5h-status": "allowed",
               "anthropic-ratelimit-unified-5h-reset": str(int(NOW) + 60)}
    assert usage_limit_reset(headers, NOW) == NOW + 86400


def test_codex_window_at_100_is_a_quota_until_that_window_resets():
    headers = {**CODEX, "x-codex-secondary-used-percent": "100"}
    o = classify(429, headers, {"error": {"type": "rate_limit_error"}}, NOW)
    assert o.kind is Kind.QUOTA and o.reset == NOW + 86400
    # the body's own reset wins when it has one
    o = classify(429, headers, {"error": {"type": "usage_limit_reached", "resets_at": NOW + 7}},
                 NOW)
    assert o.reset == NOW + 7
    o = classify(429, headers, {"error": {"type": "usage_limit_reached"}}, NOW)
    assert o.reset == NOW + 86400


def test_a_plain_429_stays_a_rate_limit():
    o = classify(429, {**UNIFIED, "retry-after": "30"}, None, NOW)
    assert o.kind is Kind.RATE_LIMITED and o.reset == NOW + 30
    assert usage_limit_reset({"x-codex-primary-used-percent": "100"}, NOW) is None  # no reset


def test_the_observer_keeps_the_event_for_the_table():
    import json

    from stickyroute.core.observe import Observer

    sse = Observer("responses")
    sse.event("codex.rate_limits", json.dumps(EVENT))
    sse.event("response.created", json.dumps({"type": "response.created",
                                              "response": {"id": "resp_1"}}))
    assert sse.response_id == "resp_1"
    assert from_codex_event(sse.rate_limits, NOW).windows[0].used_percent == 7
    ws = Observer("responses")
    ws.message(EVENT)  # a WebSocket frame
    assert ws.rate_limits == EVENT and not ws.completed


def test_a_hard_pin_on_a_used_up_account_fails_naming_the_reset_time():
    from stickyroute.core.errors import NoAccount
    from stickyroute.core.fallback import explain
    from stickyroute.core.identify import SessionId

    h = Health()
    h.record("a", classify(429, {**CODEX, "x-codex-primary-used-percent": "100"}, None, NOW), NOW)
    hard = SessionId("openai/c/s", "chain", hard=True)
    e = explain(NoAccount("openai", "it cannot move"), h, [], "a", hard, "rotate", NOW)
    assert e.status == 429 and e.retry_after == 3600
    assert e.message == ("it cannot move: a cooling (usage limit reached (429)) until "
                         "2023-11-14 23:13 UTC; retry in 3600 s")


def test_mitmproxy_headers_any_case_read_like_a_dict():
    from mitmproxy.http import Headers

    fields = [(k.title().encode(), v.encode()) for k, v in {**CODEX, **UNIFIED}.items()]
    h = Headers([(b"Content-Type", b"text/event-stream"), *fields])
    assert from_headers(h, NOW) == from_headers({**CODEX, **UNIFIED}, NOW)


# ---- what a new conversation may use ---------------------------------------------------
def test_a_new_conversation_avoids_draining_limited_and_nearly_spent_accounts():
    t = WindowTable(drain_at=90)
    assert t.takes_new("never-seen", NOW)
    t.record("drain", from_headers(CODEX, NOW), NOW)  # 95.5% of 5 h
    t.record("refused", Reading(rejected_until=NOW + 60), NOW)
    t.record("named", Reading((Window(300, 99, NOW + 60, limit="gpt-sonic"),)), NOW)
    api = {"x-ratelimit-remaining-requests": "1", "x-ratelimit-limit-requests": "100",
           "x-ratelimit-remaining-tokens": "1000", "x-ratelimit-limit-tokens": "100000",
           "x-ratelimit-reset-tokens": "6m0s"}
    t.record("spent", from_headers(api, NOW), NOW)  # 1% of a per-minute limit left
    t.record("busy", from_headers({**api, "x-ratelimit-remaining-requests": "6",
                                   "x-ratelimit-remaining-tokens": "50000"}, NOW), NOW)
    assert not t.takes_new("drain", NOW) and not t.takes_new("refused", NOW)
    assert not t.takes_new("spent", NOW) and not t.draining("spent", NOW)
    assert t.takes_new("named", NOW)  # one model's limit: other models still serve
    assert t.takes_new("busy", NOW)  # 94% of a per-minute limit: still room
    assert t.takes_new("refused", NOW + 60) and t.takes_new("spent", NOW + 360)
    t.drain_at = 96
    assert t.takes_new("drain", NOW)


def test_tightest_says_how_long_its_window_is():
    t = WindowTable()
    t.record("a", from_headers({"x-ratelimit-remaining-requests": "5",
                                "x-ratelimit-limit-requests": "10"}, NOW), NOW)
    assert t.tightest("a", NOW) == Tightest(50.0, None, 1)
