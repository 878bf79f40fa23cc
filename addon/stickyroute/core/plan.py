"""Steps 2 to 4 as one decision: which session, which account, which edits — a value, never
an action.

The glue reads a request into an `Incoming`, `read()` names its session, and `plan()` answers
with one of:
  Plan       route to this account, write or touch this pin, send this body (glue applies it)
  NeedChain  a shared store may know this previous_response_id: ask it, then plan again
  NeedClaim  a new session on a shared store: claim it, then plan again with the winner
  Refusal    no account can serve it: answer the client with this error
Nothing here writes a table or touches a flow (the pin table's lazy expiry on read aside), so
planning twice is harmless and tests drive it without mitmproxy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from stickyroute.config.accounts import Account, AccountSet
from stickyroute.config.clients import Client
from stickyroute.config.settings import Settings

from . import peek, rewrite
from .bodycap import decoded_body
from .chains import ChainMap, continue_session, unknown_previous
from .choose import Affinity, Chooser, decide
from .classify import Endpoint, Route
from .errors import NoAccount
from .fallback import decide_or_move, drop_foreign_reasoning, explain, pools, portable
from .health import Health
from .identify import SessionId, identify
from .ledger import Ledger
from .pins import Pin, PinTable


class Tables(Protocol):
    """What planning reads (the shared State has all of it)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def accounts(self) -> AccountSet: ...
    @property
    def pins(self) -> PinTable: ...
    @property
    def chains(self) -> ChainMap: ...
    @property
    def health(self) -> Health: ...
    @property
    def ledger(self) -> Ledger: ...
    @property
    def chooser(self) -> Chooser: ...
    @property
    def shared(self) -> bool: ...  # a store other proxies write too


@dataclass(frozen=True, slots=True)
class Incoming:
    """A request as the glue read it off the flow (step 1 done: it is for an account host)."""

    route: Route
    headers: Mapping[str, str]  # lower-cased names (headers.lowered)
    raw: bytes | None  # the body as sent (content-encoded); None: it is not to be looked at
    client: str  # the client namespace (gate client, or a hash of the client's credential)
    gate: Client | None = None  # the gate client, whose allowed accounts bound the choice
    attempt: int = 0  # failover's retry number (0: the client's own request)
    exclude: frozenset[str] = frozenset()  # aliases a retry must not use again
    has_body: bool = False  # the request carries a body (worth keeping for a retry)
    encoding: str = ""  # the body's Content-Encoding

    @property
    def namespace(self) -> str:
        return f"{self.route.provider}/{self.client}"


class Reading(NamedTuple):
    """Step 2 before the chain: the session the request names, and its body when parsed."""

    session: SessionId | None
    body: dict[str, Any] | None
    responses: bool  # an OpenAI/ChatGPT Responses request: chain state, injected fields
    raw: bytes | None = None  # the decoded body, when something looked at it


class Claim(NamedTuple):
    alias: str | None  # the account a shared store's first writer got; None: no answer


class Waited(NamedTuple):
    """What the glue already asked the shared store for this request."""

    chain_asked: bool = False
    claim: Claim | None = None


class NeedChain(NamedTuple):
    namespace: str
    response_id: str


class NeedClaim(NamedTuple):
    session: str
    candidates: tuple[Account, ...]


class Refusal(NamedTuple):
    error: NoAccount


class Plan(NamedTuple):
    account: Account
    affinity: Affinity
    session: SessionId | None
    pin: Pin | None  # the session's pin as it stands (touched on a hit)
    repin: bool  # (re)write the session's pin to `account` (new, moved, chain restored)
    moved_from: str | None
    body: bytes | None  # the decoded body to send instead (None: leave it as it is)
    injected: tuple[str, ...]  # fields added to the body
    dropped: tuple[str, ...]  # encrypted reasoning items taken out (a move remembers them)
    keep_copy: bool  # keep the client's request for a transparent retry


Step = Plan | NeedChain | NeedClaim | Refusal


def read(incoming: Incoming, settings: Settings) -> Reading:
    """Name the session from headers first; parse the body only when something needs it."""
    route, headers = incoming.route, incoming.headers
    session = None
    if settings.enabled:
        session = identify(route.provider, headers, None, settings.session_headers,
                           client=incoming.client)
    responses = route.endpoint is Endpoint.RESPONSES and route.provider in ("openai", "chatgpt")
    from_body = settings.enabled and session is None
    body = raw = None
    # Decoding a compressed body costs about what searching it does: only for a reader.
    if incoming.raw is not None and (from_body or responses):
        raw = decoded_body(incoming.raw, incoming.encoding)
    if raw is not None and peek.body_needed(
            raw, identify_from_body=from_body, responses=responses,
            inject_cache_key=settings.inject_cache_key, inject_include=settings.inject_include):
        body = rewrite.parse_object(raw)
        if from_body:
            session = identify(route.provider, headers, body, settings.session_headers,
                               client=incoming.client)
    return Reading(session, body, responses, raw)


NOTHING_ASKED = Waited()


def plan(incoming: Incoming, reading: Reading, tables: Tables, now: float,
         waited: Waited = NOTHING_ASKED) -> Step:
    """What to do with one request (see the module docstring)."""
    s, route = tables.settings, incoming.route
    session, body = reading.session, reading.body
    pinned: str | None = None
    if s.enabled and body is not None and route.endpoint is Endpoint.RESPONSES:
        if tables.shared and not waited.chain_asked:
            prev = unknown_previous(tables.chains, incoming.namespace, body, now)
            if prev is not None:  # another proxy may have started this chain: ask once
                return NeedChain(incoming.namespace, prev)
        link = tables.chains.find(incoming.namespace, body, now)
        if link is not None:  # the state, not the pin, has the say
            session, pinned = continue_session(session, link), link.alias
    pin = tables.pins.get(session.key, now) if session is not None else None
    if pinned is None and pin is not None:
        pinned = pin.alias
    accounts = list(tables.accounts.of_provider(route.provider))
    if incoming.gate is not None:
        accounts = [a for a in accounts if incoming.gate.allows(a.alias)]
    ready, fresh = pools(accounts, tables.health, now, incoming.exclude)
    if session is not None and pinned is None and tables.shared:
        if waited.claim is None:
            return NeedClaim(session.key, tuple(fresh or ready))
        if waited.claim.alias is not None:  # the first writer's account, when it can serve
            ready = fresh = [a for a in ready if a.alias == waited.claim.alias] or ready
    movable = route.endpoint is Endpoint.RESPONSES and portable(body, s.fallback)
    # only least-inflight reads in-flight counts: don't build them for the others
    inflight = tables.ledger.inflight(ready) if s.strategy == "least-inflight" else None
    sessions = tables.pins.sessions_per_alias()
    try:
        decision, session = decide_or_move(lambda sid: decide(
            tables.chooser, route.provider, sid, pinned, ready, sessions, s.fallback, inflight,
            fresh), session, movable)
    except NoAccount as e:
        return Refusal(explain(e, tables.health, accounts, pinned, session, s.fallback, now))
    account = decision.account
    new_body, injected, dropped = _edits(reading, body, session, pin,
                                         decision.affinity is Affinity.MOVED, s)
    return Plan(
        account=account,
        affinity=decision.affinity,
        session=session,
        pin=pin,
        repin=session is not None and (pin is None or pin.alias != account.alias),
        moved_from=decision.moved_from,
        body=new_body,
        injected=injected,
        dropped=dropped,
        keep_copy=(incoming.attempt == 0 and incoming.has_body
                   and (movable or not (session is not None and session.hard))),
    )


def _edits(reading: Reading, body: dict[str, Any] | None,
           session: SessionId | None, pin: Pin | None, moved: bool,
           s: Settings) -> tuple[bytes | None, tuple[str, ...], tuple[str, ...]]:
    """Step 4's body edits on OpenAI Responses bodies: (new body, fields added, items dropped).

    (peek parses every body holding a reasoning item: none unparsed has one to drop)
    """
    raw = reading.raw
    if body is None or raw is None or not reading.responses:
        return None, (), ()
    new: bytes | None = None
    body, gone = drop_foreign_reasoning(body, pin, moved)
    if gone:  # the account cannot read another account's encrypted reasoning
        new = raw = json.dumps(body, ensure_ascii=False).encode()
    cache_key = rewrite.cache_key_for(session.key) if (
        session is not None and s.inject_cache_key) else None
    add = rewrite.wanted_fields(body, cache_key, s.inject_include)
    if add:
        new = rewrite.add_fields(raw, body, add)
    return new, tuple(sorted(add)), tuple(gone)
