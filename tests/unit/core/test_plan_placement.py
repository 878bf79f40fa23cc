"""plan() with usage windows and warm prefixes: what a new conversation's placement reads, when a
cold soft pin lets go, and what the Plan hands the glue to record. Driven with a State and no
mitmproxy."""

import dataclasses
import json

import pytest

from stickyroute.config.accounts import parse_accounts
from stickyroute.config.settings import Settings
from stickyroute.core.classify import Endpoint, Route
from stickyroute.core.identify import SessionId
from stickyroute.core.outcome import Kind, Outcome
from stickyroute.core.plan import (
    NOTHING_ASKED,
    Claim,
    Incoming,
    NeedClaim,
    Plan,
    Waited,
    plan,
    read,
)
from stickyroute.core.prefix import ANTHROPIC_LONG_TTL, ANTHROPIC_TTL, Prefix, prefix_of
from stickyroute.core.windows import Reading, Window
from stickyroute.state import State

NOW = 1_700_000_000.0
SYSTEM = "You are a careful coding agent. " * 200  # long enough to be cached
ACCOUNTS = parse_accounts("""\
accounts:
  - {alias: oa, provider: openai, api_key: sk-acct-oa}
  - {alias: ob, provider: openai, api_key: sk-acct-ob}
  - {alias: an, provider: anthropic, api_key: sk-ant-a}
  - {alias: am, provider: anthropic, api_key: sk-ant-m}
""")
OPENAI = Route("openai", Endpoint.RESPONSES)
ANTHROPIC = Route("anthropic", Endpoint.MESSAGES)


def state(**settings: object) -> State:
    st = State(clock=lambda: NOW,
               settings=dataclasses.replace(Settings.defaults(), **settings))  # type: ignore[arg-type]
    st.use_accounts(ACCOUNTS)
    return st


def openai(session: str, text: str = "hi", **extra: object) -> Incoming:
    body = {"model": "gpt-5", "instructions": SYSTEM, "input": text, "prompt_cache_key": "k",
            **extra}
    return Incoming(OPENAI, {"session-id": session}, json.dumps(body).encode(), "c",
                    has_body=True)


def anthropic(session: str, ttl: str | None = None) -> Incoming:
    marker = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    body = {"model": "claude", "max_tokens": 5,
            "system": [{"type": "text", "text": SYSTEM, "cache_control": marker}],
            "messages": [{"role": "user", "content": "hi"}]}
    return Incoming(ANTHROPIC, {"x-claude-code-session-id": session},
                    json.dumps(body).encode(), "c", has_body=True)


def route(st: State, incoming: Incoming, now: float = NOW, waited: Waited = NOTHING_ASKED) -> Plan:
    """plan(), then what the glue's apply records (pins, warm prefixes)."""
    reading = read(incoming, st.settings, lambda key: st.pins.get(key, now) is not None)
    p = plan(incoming, reading, st, now, waited)
    assert isinstance(p, Plan), p
    assert p.session is not None
    pin = p.pin
    if p.repin or pin is None:
        pin, _ = st.pins.put(p.session.key, p.account.alias, now)
    st.pins.touch(pin, now)
    if p.prefix is not None:
        pin.prefix = p.prefix.key
        st.warm.touch(p.account.alias, p.prefix, now)
    if p.cache_ttl is not None:
        pin.cache_ttl = p.cache_ttl
    return p


def drain(st: State, alias: str, used: float = 95, now: float = NOW) -> None:
    st.windows.record(alias, Reading((Window(300, used, now + 3600),)), now)


# ---- read(): the body of a NEW conversation, once ---------------------------------------
def test_a_new_conversation_has_its_prefix_read_and_a_pinned_one_not():
    st = state()
    new = read(anthropic("s1"), st.settings, lambda key: False)
    assert new.body is not None and new.prefix is not None
    assert new.prefix.ttl == ANTHROPIC_TTL
    later = read(anthropic("s1"), st.settings, lambda key: True)
    assert later.body is None and later.prefix is None  # the header named it: body unread
    assert read(anthropic("s1"), st.settings).prefix is None  # pins unknown: no placement


@pytest.mark.parametrize("settings", [{"strategy": "least-sessions"}, {"enabled": False}])
def test_other_strategies_and_no_pinning_never_read_a_prefix(settings):
    st = state(**settings)
    got = read(anthropic("s1"), st.settings, lambda key: False)
    assert got.prefix is None and got.body is None


def test_a_derived_session_reads_its_prefix_only_while_new():
    st = state()
    raw = json.dumps({"model": "gpt-5", "instructions": SYSTEM, "input": "hi"}).encode()
    incoming = Incoming(OPENAI, {}, raw, "c", has_body=True)
    assert read(incoming, st.settings, lambda key: False).prefix is not None
    pinned = read(incoming, st.settings, lambda key: True)
    assert pinned.session is not None and pinned.body is not None and pinned.prefix is None


# ---- plan(): new conversations go where their prefix is warm, clear of limits ----------
def test_a_new_conversation_follows_its_warm_prefix_and_says_so():
    st = state()
    first = route(st, openai("s1"))
    assert first.placed == "load" and first.prefix is not None and first.cache_ttl == 600
    assert st.warm.warm(first.prefix.key, NOW) == {first.account.alias: NOW + 600}
    pin = st.pins.get(first.session.key, NOW)
    assert pin is not None and pin.prefix == first.prefix.key and pin.cache_ttl == 600
    second = route(st, openai("s2", "another task"))
    assert second.account == first.account and second.placed == "warm"
    third = route(st, openai("s3", "a third"))  # two sessions there, none elsewhere: too busy
    assert third.account != first.account and third.placed == "load"


def test_a_new_conversation_avoids_a_draining_account():
    st = state()
    drain(st, "oa")
    assert {route(st, openai(f"s{i}", f"t{i}")).account.alias for i in range(4)} == {"ob"}


def test_warm_prefix_on_a_draining_account_is_not_followed():
    st = state()
    first = route(st, openai("s1"))
    drain(st, first.account.alias)
    assert route(st, openai("s2", "other")).account != first.account


def test_in_flight_counts_bound_the_warm_pick():
    st = state()
    first = route(st, openai("s1"))
    st.ledger[first.account.alias].inflight = 8  # > mean 4 * 1.25 + 2
    assert route(st, openai("s2", "other")).account != first.account


def test_a_request_asking_24h_retention_keeps_its_pin_warm_that_long():
    st = state()
    p = route(st, openai("s1", prompt_cache_retention="24h"))
    assert p.cache_ttl == 86400 and p.prefix is not None and p.prefix.ttl == 86400


def test_anthropic_one_hour_markers_set_the_pins_cache_lifetime():
    st = state()
    p = route(st, anthropic("s1", ttl="1h"))
    assert p.cache_ttl == ANTHROPIC_LONG_TTL
    pin = st.pins.get(p.session.key, NOW)
    assert pin is not None and pin.cache_ttl == ANTHROPIC_LONG_TTL
    # later turns are not parsed (header session): the pin keeps what the first asked
    later = route(st, anthropic("s1", ttl="1h"), NOW + 10)
    assert later.cache_ttl == ANTHROPIC_LONG_TTL and later.prefix == p.prefix._replace(
        ttl=ANTHROPIC_LONG_TTL)
    assert st.warm.warm(p.prefix.key, NOW + 10) == {p.account.alias: NOW + 10 + 3600}


# ---- plan(): existing soft pins keep their account until limited or cold ---------------
def test_a_soft_pin_on_a_draining_account_stays_while_its_cache_is_warm():
    st = state()
    p = route(st, anthropic("s1"))
    drain(st, p.account.alias)
    hot = route(st, anthropic("s1"), NOW + ANTHROPIC_TTL - 1)
    assert hot.account == p.account and hot.affinity == "hit"
    cold = route(st, anthropic("s1"), NOW + 2 * ANTHROPIC_TTL)
    assert cold.affinity == "moved" and cold.moved_from == p.account.alias
    assert cold.placed in ("warm", "headroom", "load")
    assert cold.prefix is not None and cold.prefix.key == p.prefix.key  # the move carries it
    assert cold.account.alias in st.warm.warm(p.prefix.key, NOW + 2 * ANTHROPIC_TTL)


def test_a_cold_soft_pin_on_a_fine_account_stays():
    st = state()
    p = route(st, anthropic("s1"))
    assert route(st, anthropic("s1"), NOW + 3000).affinity == "hit"
    assert route(st, anthropic("s1"), NOW + 3100).account == p.account


def test_a_cold_soft_pin_on_a_cooling_account_is_placed_afresh_even_under_fail():
    st = state(fallback="fail")
    p = route(st, anthropic("s1"))
    st.health.record(p.account.alias, Outcome(Kind.QUOTA, "usage limit", NOW + 7200), NOW)
    later = NOW + ANTHROPIC_TTL + 1
    moved = route(st, anthropic("s1"), later)
    assert moved.affinity == "moved" and moved.account != p.account


def test_a_warm_pin_on_a_limited_account_waits_under_fail():
    st = state(fallback="fail")
    p = route(st, anthropic("s1"))
    st.health.record(p.account.alias, Outcome(Kind.QUOTA, "usage limit", NOW + 7200), NOW)
    reading = read(anthropic("s1"), st.settings, lambda key: True)
    refused = plan(anthropic("s1"), reading, st, NOW + 10)
    assert not isinstance(refused, Plan)
    assert "until" in refused.error.message  # names the reset time


def test_a_hard_pin_never_lets_go():
    st = state()
    p = route(st, openai("s1"))
    hard = SessionId(p.session.key, "chain:previous_response_id", hard=True)
    drain(st, p.account.alias, used=100)
    st.chains.learn("openai/c", ["resp_1"], hard.key, p.account.alias, NOW)
    incoming = openai("s1", previous_response_id="resp_1")
    later = NOW + 7200
    reading = read(incoming, st.settings, lambda key: True)
    got = plan(incoming, reading, st, later)
    assert isinstance(got, Plan) and got.account == p.account and got.affinity == "hit"


# ---- shared stores: the claim places with the same signals -------------------------------
def test_a_claim_carries_the_signals_and_in_flight_counts():
    st = state()
    st_shared = _SharedState(st)
    first = route(st, openai("s1"))
    st.ledger["ob"].inflight = 2
    incoming = openai("s2", "other")
    reading = read(incoming, st.settings, lambda key: False)
    need = plan(incoming, reading, st_shared, NOW)
    assert isinstance(need, NeedClaim)
    assert need.signals is not None and need.signals.warm == {first.account.alias: NOW + 600}
    assert need.inflight == {"oa": st.ledger["oa"].inflight, "ob": 2}
    got = plan(incoming, reading, st_shared, NOW, Waited(claim=Claim("ob")))
    assert isinstance(got, Plan) and got.account.alias == "ob"


class _SharedState:
    """A State whose store other proxies share (only `shared` differs)."""

    def __init__(self, st: State) -> None:
        self._st = st

    def __getattr__(self, name: str) -> object:
        return getattr(self._st, name)

    @property
    def shared(self) -> bool:
        return True


def test_prefix_of_the_plan_is_the_conversations():
    st = state()
    p = route(st, openai("s1"))
    body = json.loads(openai("s1").raw or b"")
    assert p.prefix == prefix_of("openai", body, 600) == Prefix(p.prefix.key, 600)
