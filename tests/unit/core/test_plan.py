"""core/plan.py driven directly: a small State, a fake clock, no mitmproxy.

read() names the session; plan() answers Plan (new, hit, moved, unpinned), NeedChain,
NeedClaim or Refusal, and never writes a table: applying the plan is the glue's job.
"""

import dataclasses
import json

import pytest

from stickyroute.config.accounts import parse_accounts
from stickyroute.config.clients import Client
from stickyroute.core.choose import Affinity
from stickyroute.core.classify import Endpoint, classify
from stickyroute.core.outcome import Kind, Outcome
from stickyroute.core.plan import (
    NOTHING_ASKED,
    Answer,
    Claim,
    Incoming,
    NeedChain,
    NeedClaim,
    Plan,
    Refusal,
    Waited,
    plan,
    read,
)
from stickyroute.core.rewrite import cache_key_for
from stickyroute.state import State
from stickyroute.stores.base import MemoryStore
from stickyroute.stores.snapshot import pin_row
from tests.helpers import ACCOUNTS, Clock

CLIENT = "c1"
NS = f"openai/{CLIENT}"  # the chain namespace of CLIENT's OpenAI requests


class SharedStore(MemoryStore):
    """What planning sees of a store other proxies write too (only `shared` is read)."""

    shared = True


def state(shared: bool = False, **settings: object) -> State:
    st = State(clock=Clock(), store=SharedStore() if shared else MemoryStore())
    st.use_settings(dataclasses.replace(st.settings, strategy="fill-first", **settings))
    st.use_accounts(parse_accounts(ACCOUNTS, env={}))
    return st


def incoming(body: dict | None = None, session: str | None = None, provider: str = "openai",
             path: str = "/v1/responses", **kw: object) -> Incoming:
    headers = {"session-id": session} if session else {}
    raw = json.dumps(body).encode() if body is not None else None
    return Incoming(route=classify(provider, path), headers=headers, raw=raw, client=CLIENT,
                    has_body=raw is not None, **kw)


def step(st: State, inc: Incoming, waited: Waited = NOTHING_ASKED):
    return plan(inc, read(inc, st.settings), st, st.clock(), waited)


def tables(st: State) -> tuple:
    """Everything planning could write: pins (with their counters), chains, ledger, health."""
    pins = [pin_row(p) for p in st.pins]  # (the pin's own fields: pins link to each other)
    ledger = {a: dataclasses.astuple(st.ledger[a]) for a in ("oa", "ob", "an")}
    return pins, st.chains.export_state(), ledger, st.health.export_state()


def apply(st: State, p: Plan) -> None:
    """The part of the glue's apply step that planning depends on: the pin write."""
    pin, _ = st.pins.put(p.session.key, p.account.alias, st.clock())
    st.pins.touch(pin, st.clock())


BODY = {"model": "gpt-5", "input": "hi"}


# ---- read ----------------------------------------------------------------------------------

def test_read_names_the_session_from_headers_and_parses_only_when_needed():
    st = state()
    codex = {"model": "gpt-5", "input": "hi", "prompt_cache_key": "k", "store": True}
    r = read(incoming(codex, session="s1"), st.settings)
    assert r.session.key == f"{NS}/s1" and r.session.source == "header:session-id"
    assert r.body is None and r.responses  # nothing to add, nothing to find: not parsed
    r = read(incoming(BODY, session="s1"), st.settings)
    assert r.body == BODY  # a prompt_cache_key is to be added: parsed
    r = read(incoming({"model": "gpt-5", "prompt_cache_key": "pck"}), st.settings)
    assert r.session.key == f"{NS}/pck" and r.session.source == "body:prompt_cache_key"
    r = read(incoming({"messages": []}, provider="anthropic", path="/v1/messages",
                      session="s2"), st.settings)
    assert r.session.key == f"anthropic/{CLIENT}/s2" and not r.responses


def test_read_names_no_session_when_sticky_is_off():
    st = state(enabled=False)
    assert read(incoming(BODY, session="s1"), st.settings).session is None


# ---- Plan: new, hit, moved, unpinned --------------------------------------------------------

def test_new_session_is_planned_not_pinned():
    st = state()
    p = step(st, incoming(BODY, session="s1"))
    assert isinstance(p, Plan)
    assert (p.account.alias, p.affinity, p.pin, p.repin, p.moved_from) == (
        "oa", Affinity.NEW, None, True, None)
    assert p.session.key == f"{NS}/s1"
    assert p.injected == ("prompt_cache_key",) and p.dropped == ()
    assert json.loads(p.body) == {**BODY, "prompt_cache_key": cache_key_for(f"{NS}/s1")}
    assert p.keep_copy  # a soft pin with a body: kept for a transparent retry
    assert len(st.pins) == 0  # planning wrote nothing: the same plan again is NEW again
    assert step(st, incoming(BODY, session="s1")) == p


def test_pinned_session_is_a_hit_on_its_pin():
    st = state()
    apply(st, step(st, incoming(BODY, session="s1")))
    pin = st.pins.get(f"{NS}/s1", st.clock())
    p = step(st, incoming(BODY, session="s1"))
    assert (p.account.alias, p.affinity, p.pin, p.repin) == ("oa", Affinity.HIT, pin, False)
    assert pin.requests == 1  # the hit is counted when applied, not when planned


def test_pin_on_an_unavailable_account_moves():
    st = state()
    apply(st, step(st, incoming(BODY, session="s1")))
    st.health.disable("oa", "by hand", st.clock())
    p = step(st, incoming(BODY, session="s1"))
    assert (p.account.alias, p.affinity, p.moved_from, p.repin) == (
        "ob", Affinity.MOVED, "oa", True)
    assert st.pins.get(f"{NS}/s1", st.clock()).alias == "oa"  # the glue re-pins


def test_move_drops_encrypted_reasoning_the_new_account_cannot_read():
    st = state()
    apply(st, step(st, incoming(BODY, session="s1")))
    st.health.disable("oa", "by hand", st.clock())
    body = {"model": "gpt-5", "store": False, "input": [
        {"role": "user", "content": "hi"},
        {"type": "reasoning", "id": "rs_1", "encrypted_content": "sealed-by-oa"}]}
    p = step(st, incoming(body, session="s1"))
    assert p.affinity is Affinity.MOVED and p.dropped == ("rs_1",)
    assert [i.get("type") for i in json.loads(p.body)["input"]] == [None]


def test_request_without_identity_is_unpinned():
    st = state()
    p = step(st, incoming({"model": "gpt-5", "input": [{"type": "function_call_output"}]}))
    assert (p.affinity, p.session, p.repin, p.injected) == (Affinity.UNPINNED, None, False, ())


def test_sticky_off_routes_by_strategy_alone():
    st = state(enabled=False)
    p = step(st, incoming(BODY, session="s1"))
    assert p.affinity is Affinity.UNPINNED and p.session is None and p.body is None


def test_known_chain_decides_and_is_hard():
    st = state()
    st.chains.learn(NS, ["resp_1"], f"{NS}/s1", "ob", st.clock())
    p = step(st, incoming({**BODY, "previous_response_id": "resp_1"}))
    assert p.account.alias == "ob" and p.session.key == f"{NS}/s1" and p.session.hard
    assert p.repin  # the chain's session is pinned where its state is


def test_retry_excludes_accounts_already_tried():
    st = state()
    p = step(st, incoming(BODY, session="s1", attempt=1, exclude=frozenset({"oa"})))
    assert p.account.alias == "ob" and not p.keep_copy  # only the client's own request is kept


def test_gate_client_only_gets_its_accounts():
    st = state()
    only_ob = Client("bob", "h", frozenset({"ob"}))
    assert step(st, incoming(BODY, session="s1", gate=only_ob)).account.alias == "ob"


# ---- NeedChain, NeedClaim ----------------------------------------------------------------

def test_unknown_previous_response_id_asks_a_shared_store_once():
    st = state(shared=True)
    inc = incoming({**BODY, "previous_response_id": "resp_x"})
    assert step(st, inc) == NeedChain(NS, "resp_x")
    # asked already: plan on (a new session on a shared store: claim it)
    assert isinstance(step(st, inc, Waited(chain_asked=True)), NeedClaim)


def test_no_chain_question_without_a_shared_store_or_when_the_chain_is_known():
    inc = incoming({**BODY, "previous_response_id": "resp_x"})
    assert isinstance(step(state(), inc), Plan)  # a local store knows all it will ever know
    st = state(shared=True)
    st.chains.learn(NS, ["resp_x"], f"{NS}/s1", "ob", st.clock())
    assert isinstance(step(st, inc), Plan)  # known here: no round trip
    plain = incoming(BODY, session="s1")
    assert not isinstance(step(st, plain), NeedChain)  # no previous_response_id: never


def test_new_session_on_a_shared_store_is_claimed_then_planned_on_the_winner():
    st = state(shared=True)
    inc = incoming(BODY, session="s1")
    need = step(st, inc)
    assert isinstance(need, NeedClaim)
    assert (need.session, need.candidates) == (f"{NS}/s1", tuple(st.accounts.of_provider("openai")))
    # another proxy was first and got ob: this request goes there too (fill-first says oa)
    p = step(st, inc, Waited(claim=Claim("ob")))
    assert isinstance(p, Plan) and (p.account.alias, p.affinity) == ("ob", Affinity.NEW)
    # the store did not answer: routed from memory by the strategy
    assert step(st, inc, Waited(claim=Claim(None))).account.alias == "oa"
    # the winner cannot serve here: any ready account rather than none
    st.health.disable("ob", "by hand", st.clock())
    assert step(st, inc, Waited(claim=Claim("ob"))).account.alias == "oa"


def test_pinned_or_unpinned_requests_never_claim():
    st = state(shared=True)
    apply(st, step(st, inc := incoming(BODY, session="s1"), Waited(claim=Claim("ob"))))
    assert step(st, inc).affinity is Affinity.HIT
    assert step(st, incoming({"model": "m", "input": []})).affinity is Affinity.UNPINNED


# ---- Refusal -------------------------------------------------------------------------------

def test_no_account_is_a_provider_shaped_refusal():
    st = state()
    for alias in ("oa", "ob"):
        st.health.disable(alias, "by hand", st.clock())
    r = step(st, incoming(BODY, session="s1"))
    assert isinstance(r, Refusal)
    e = r.error
    assert (e.status, e.code, e.retry_after) == (503, "no_account_available", None)
    assert "oa disabled (by hand)" in e.message and "ob disabled (by hand)" in e.message
    assert json.loads(e.body())["error"]["code"] == "no_account_available"  # OpenAI's shape
    assert not [s for s in st.accounts.secrets() if s in e.message or s.encode() in e.body()]


def test_anthropic_refusal_speaks_anthropic():
    st = state()
    st.health.disable("an", "by hand", st.clock())
    r = step(st, incoming({"model": "c", "messages": []}, provider="anthropic",
                          path="/v1/messages", session="s1"))
    doc = json.loads(r.error.body())
    assert doc["type"] == "error" and doc["error"]["type"] == "overloaded_error"


def test_cooling_accounts_refuse_with_429_and_when_to_retry():
    st = state()
    now = st.clock()
    for alias, wait in (("oa", 30), ("ob", 12.5)):
        st.health.record(alias, Outcome(Kind.RATE_LIMITED, "rate limited (429)", now + wait), now)
    e = step(st, incoming(BODY, session="s1")).error
    assert (e.status, e.code, e.retry_after) == (429, "account_cooling_down", 13)


def test_hard_pin_refuses_rather_than_moves():
    st = state()
    st.chains.learn(NS, ["resp_1"], f"{NS}/s1", "oa", st.clock())
    st.health.disable("oa", "by hand", st.clock())
    r = step(st, incoming({**BODY, "previous_response_id": "resp_1"}))
    assert isinstance(r, Refusal) and "'oa', which is unavailable; it cannot move" in r.error.message


# ---- planning never writes ------------------------------------------------------------------

@pytest.mark.parametrize("shared", [False, True])
def test_plan_never_writes_a_table(shared):
    st = state(shared=shared)
    apply(st, step(st, incoming(BODY, session="pinned"), Waited(claim=Claim("oa"))))
    st.chains.learn(NS, ["resp_1"], f"{NS}/pinned", "oa", st.clock())
    requests = [incoming(BODY, session="pinned"), incoming(BODY, session="new"),
                incoming({**BODY, "previous_response_id": "resp_1"}),
                incoming({**BODY, "previous_response_id": "resp_unknown"}),
                incoming({"model": "m", "input": []})]
    for unwell in ((), ("oa",), ("oa", "ob")):  # hits and news, then moves, then refusals
        for alias in unwell:
            st.health.disable(alias, "by hand", st.clock())
        before = tables(st)
        for inc in requests:
            for waited in (NOTHING_ASKED, Waited(chain_asked=True, claim=Claim("ob")),
                           Waited(chain_asked=True, claim=Claim(None))):
                step(st, inc, waited)
        assert tables(st) == before, unwell


# ---- ChatGPT's workspace discovery: the proxy answers it with the client's own workspace ----

def _jwt(claims: dict) -> str:
    import base64

    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


@pytest.mark.parametrize("headers, workspace", [
    ({"chatgpt-account-id": "ws-own"}, "ws-own"),
    ({"authorization": "Bearer " + _jwt({"https://api.openai.com/auth":
                                          {"chatgpt_account_id": "ws-claim"}})}, "ws-claim"),
])
def test_workspace_discovery_is_answered_with_the_clients_own_workspace(headers, workspace):
    route = classify("chatgpt", "/backend-api/wham/accounts/check")
    assert route is not None and route.endpoint is Endpoint.WORKSPACES
    incoming = Incoming(route, headers, None, "c")
    step = plan(incoming, read(incoming, State().settings), State(), 0.0)
    assert isinstance(step, Answer) and step.status == 200
    doc = json.loads(step.body)
    assert doc["account_ordering"] == [workspace] and doc["accounts"][0]["id"] == workspace
    assert doc["accounts"][0]["account_routing_override"] == "NO_CONSTRAINT"


def test_workspace_discovery_without_a_workspace_goes_upstream_like_any_request():
    assert classify("openai", "/backend-api/wham/accounts/check").endpoint is Endpoint.OTHER
    route = classify("chatgpt", "/backend-api/wham/accounts/check")
    incoming = Incoming(route, {"authorization": "Bearer not-a-jwt"}, None, "c")
    step = plan(incoming, read(incoming, State().settings), State(), 0.0)
    assert not isinstance(step, Answer)  # no workspace named: routed to an account as usual
