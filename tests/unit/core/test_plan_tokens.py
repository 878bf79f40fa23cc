"""Planning for subscription accounts: sign with the login's tokens, or ask for a refresh first
(NeedTokens) only when the token can no longer be sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakeapi.oauth import OAuthLogins, write_login_file
from stickyroute.config.accounts import parse_accounts
from stickyroute.core.classify import classify
from stickyroute.core.identify import SessionId
from stickyroute.core.oauth import fingerprint
from stickyroute.core.plan import Incoming, NeedTokens, Plan, Refusal, Waited, plan, read
from stickyroute.state import State
from tests.helpers import Clock

NOTHING = Waited()


@pytest.fixture
def world(tmp_path: Path) -> tuple[State, Clock, OAuthLogins]:
    clock = Clock()
    fake = OAuthLogins(clock, access_ttl=600)  # tokens expire at clock 1600
    write_login_file(tmp_path / "c1.json", fake.create("acct-c1", "anthropic", login="c1"))
    write_login_file(tmp_path / "c2.json", fake.create("acct-c2", "anthropic", login="c2"))
    accounts = parse_accounts(
        "accounts:\n"
        "  - {alias: c1, provider: anthropic, oauth_file: c1.json}\n"
        "  - {alias: c2, provider: anthropic, oauth_file: c2.json}\n", base_dir=tmp_path)
    state = State(clock=clock)
    state.use_accounts(accounts)
    return state, clock, fake


def incoming(session: str = "s1") -> Incoming:
    route = classify("anthropic", "/v1/messages")
    assert route is not None
    return Incoming(route=route, headers={"x-claude-code-session-id": session}, raw=b"{}",
                    client="c", has_body=True)


def step(state: State, waited: Waited = NOTHING, session: str = "s1"
         ) -> Plan | NeedTokens | Refusal:
    inc = incoming(session)
    got = plan(inc, read(inc, state.settings), state, state.clock(), waited)
    assert isinstance(got, Plan | NeedTokens | Refusal)
    return got


def test_a_valid_token_is_signed_with_even_inside_the_margin(world) -> None:
    state, clock, _ = world
    clock.t = 1590  # 10 s left, well inside sticky_refresh_margin: the background's job
    got = step(state)
    assert isinstance(got, Plan) and got.tokens == state.logins.tokens(got.account.alias)
    assert got.keep_copy  # a refused token is refreshed and the request sent again


def test_an_expired_token_asks_for_its_refresh_once(world) -> None:
    state, clock, _ = world
    clock.t = 1600
    need = step(state)
    assert isinstance(need, NeedTokens) and need.alias in ("c1", "c2")
    held = state.logins.tokens(need.alias)
    assert held is not None and need.stale == fingerprint(held.access_token)  # never the token
    # the refresh failed and health did not take the account out: the provider decides
    again = step(state, Waited(refreshed=frozenset({need.alias})))
    assert isinstance(again, Plan) or (isinstance(again, NeedTokens) and again.alias != need.alias)


def test_a_login_that_vanished_is_never_sent_unsigned(world) -> None:
    state, _, _ = world
    first = step(state)
    assert isinstance(first, Plan)
    alias = first.account.alias
    assert first.session is not None
    state.pins.put(first.session.key, alias, state.clock())  # what applying the plan does
    state.logins.retain([a for a in ("c1", "c2") if a != alias])  # as if never loaded
    need = step(state)
    assert need == NeedTokens(alias, None)  # pinned there: the refresh says it is missing
    refused = step(state, Waited(refreshed=frozenset({alias})))
    assert isinstance(refused, Refusal) and "has no login to sign with" in str(refused.error)


def test_hard_pins_on_a_login_account_are_kept_for_a_resend(world, monkeypatch) -> None:
    from stickyroute.core import plan as plan_module

    state, _, _ = world
    hard = SessionId("anthropic/c/s1", "chain", hard=True)
    monkeypatch.setattr(plan_module, "identify", lambda *a, **k: hard)
    got = step(state)
    assert isinstance(got, Plan) and got.keep_copy


def test_a_websocket_handshake_is_not_kept(world) -> None:
    state, _, _ = world
    route = classify("anthropic", "/v1/messages")
    assert route is not None
    inc = Incoming(route=route, headers={"upgrade": "websocket", "x-claude-code-session-id": "w"},
                   raw=None, client="c")
    got = plan(inc, read(inc, state.settings), state, state.clock(), NOTHING)
    assert isinstance(got, Plan) and not got.keep_copy
    bodiless = Incoming(route=route, headers={"x-claude-code-session-id": "g"}, raw=None,
                        client="c")
    got = plan(bodiless, read(bodiless, state.settings), state, state.clock(), NOTHING)
    assert isinstance(got, Plan) and got.keep_copy  # a GET is sent again after a refresh
