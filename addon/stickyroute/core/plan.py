"""Steps 2 to 4 as one decision: which session, which account, which edits — a value, never
an action.

The glue reads a request into an `Incoming`, `read()` names its session (and, for a new
conversation under the headroom strategy, its prompt prefix), and `plan()` answers with one of:
  Plan       route to this account, write or touch this pin, send this body (glue applies it)
  NeedChain  a shared store may know this previous_response_id: ask it, then plan again
  NeedClaim  a new session on a shared store: claim it, then plan again with the winner
  NeedTokens the chosen subscription account's access token has expired (or its login is not
             loaded): wait for its refresh, then plan again
  Refusal    no account can serve it: answer the client with this error
  Answer     the proxy answers itself (ChatGPT's workspace discovery)
Nothing here writes a table or touches a flow (the pin table's lazy expiry on read aside), so
planning twice is harmless and tests drive it without mitmproxy. A refresh is asked for only
when the token can no longer be sent: while it is valid, refreshing is the background's job.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from stickyroute.config.accounts import Account, AccountSet
from stickyroute.config.clients import Client
from stickyroute.config.oauth import Tokens, chatgpt_account_id
from stickyroute.config.settings import Settings

from . import peek, rewrite
from .bodycap import decoded_body
from .chains import ChainMap, continue_session, unknown_previous
from .choose import Affinity, Chooser, decide
from .classify import Endpoint, Route
from .errors import NoAccount, workspaces_answer
from .fallback import decide_or_move, drop_foreign_reasoning, explain, pools, portable
from .health import Health
from .identify import SessionId, identify
from .ledger import Ledger
from .logins import Logins
from .oauth import fingerprint
from .pins import Pin, PinTable
from .placement import Signals, let_go
from .prefix import Prefix, WarmPrefixes, cache_ttl, prefix_of
from .windows import WindowTable


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
    def windows(self) -> WindowTable: ...
    @property
    def warm(self) -> WarmPrefixes: ...
    @property
    def ledger(self) -> Ledger: ...
    @property
    def chooser(self) -> Chooser: ...
    @property
    def shared(self) -> bool: ...  # a store other proxies write too
    @property
    def logins(self) -> Logins: ...  # the current tokens of subscription accounts


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
    prefix: Prefix | None = None  # a new conversation's prompt prefix (headroom placement)
    raw: bytes | None = None  # the decoded body, when something looked at it


class Claim(NamedTuple):
    alias: str | None  # the account a shared store's first writer got; None: no answer


class Waited(NamedTuple):
    """What the glue already asked the shared store for this request."""

    chain_asked: bool = False
    claim: Claim | None = None
    refreshed: frozenset[str] = frozenset()  # logins whose refresh this request waited for


class NeedChain(NamedTuple):
    namespace: str
    response_id: str


class NeedClaim(NamedTuple):
    session: str
    candidates: tuple[Account, ...]
    signals: Signals | None = None  # the claim places with what plan() would place with
    inflight: Mapping[str, int] | None = None


class NeedTokens(NamedTuple):
    alias: str  # the account whose login must be refreshed before it can sign
    stale: str | None = None  # the expired access token's fingerprint (None: no login held)


class Refusal(NamedTuple):
    error: NoAccount


class Answer(NamedTuple):
    status: int
    body: bytes
    what: str  # for the log line and the flow's metadata


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
    tokens: Tokens | None = None  # a subscription account's login tokens to sign with
    prefix: Prefix | None = None  # the conversation's prompt prefix: warm on `account` from now
    cache_ttl: float | None = None  # the cache lifetime its requests ask for (None: unknown)
    placed: str | None = None  # how a new pick was made: warm | headroom | load | <strategy>


Step = Plan | NeedChain | NeedClaim | NeedTokens | Refusal | Answer


def read(incoming: Incoming, settings: Settings,
         pinned: Callable[[str], bool] | None = None) -> Reading:
    """Name the session from headers first; parse the body only when something needs it.

    `pinned(key)`: whether a session has a pin. A NEW conversation under the headroom strategy
    has its body read for its prompt prefix (~0.4 ms on 80 KB: once per conversation, never on
    its later turns).
    """
    route, headers = incoming.route, incoming.headers
    session = None
    if settings.enabled:
        session = identify(route.provider, headers, None, settings.session_headers,
                           client=incoming.client)
    responses = route.endpoint is Endpoint.RESPONSES and route.provider in ("openai", "chatgpt")
    by_prefix = (pinned if settings.enabled and settings.strategy == "headroom" else None)
    new = by_prefix is not None and (session is None or not by_prefix(session.key))
    from_body = settings.enabled and session is None
    body = raw = prefix = None
    # Decoding a compressed body costs about what searching it does: only for a reader.
    if incoming.raw is not None and (from_body or responses or new):
        raw = decoded_body(incoming.raw, incoming.encoding)
    if raw is not None and peek.body_needed(
            raw, identify_from_body=from_body, responses=responses,
            inject_cache_key=settings.inject_cache_key, inject_include=settings.inject_include,
            place_new=new):
        body = rewrite.parse_object(raw)
        if from_body:
            session = identify(route.provider, headers, body, settings.session_headers,
                               client=incoming.client)
            new = new and session is not None and by_prefix is not None and not by_prefix(
                session.key)
        if new and body is not None and session is not None:
            prefix = prefix_of(route.provider, body, settings.openai_cache_ttl)
    return Reading(session, body, responses, prefix, raw)


NOTHING_ASKED = Waited()


def plan(incoming: Incoming, reading: Reading, tables: Tables, now: float,
         waited: Waited = NOTHING_ASKED) -> Step:
    """What to do with one request (see the module docstring)."""
    s, route = tables.settings, incoming.route
    if route.endpoint is Endpoint.WORKSPACES:
        workspace = client_workspace(incoming.headers)
        if workspace is not None:
            return Answer(200, workspaces_answer(workspace), "workspace discovery")
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
    asked = cache_ttl(route.provider, body, s.openai_cache_ttl) if body is not None else None
    if asked is None and pin is not None:
        asked = pin.cache_ttl
    ttl = asked if asked is not None else cache_ttl(route.provider, None, s.openai_cache_ttl)
    release = pin is not None and pin.alias == pinned and _cold_and_unwelcome(
        tables, session, pin, ttl, now)
    placing = pinned is None or release or all(a.alias != pinned for a in ready)
    conversation = reading.prefix.key if reading.prefix else (pin.prefix if pin else None)
    signals = Signals(tables.windows, now, tables.warm.warm(conversation, now) if (
        placing and conversation and s.strategy == "headroom") else {})
    # only these strategies read in-flight counts, and only to place: don't build them else
    inflight = tables.ledger.inflight(ready) if placing and s.strategy in (
        "least-inflight", "headroom") else None
    if session is not None and pinned is None and tables.shared:
        if waited.claim is None:
            return NeedClaim(session.key, tuple(fresh or ready), signals, inflight)
        if waited.claim.alias is not None:  # the first writer's account, when it can serve
            ready = fresh = [a for a in ready if a.alias == waited.claim.alias] or ready
    movable = route.endpoint is Endpoint.RESPONSES and portable(body, s.fallback)
    sessions = tables.pins.sessions_per_alias()
    try:
        decision, session = decide_or_move(lambda sid: decide(
            tables.chooser, route.provider, sid, pinned, ready, sessions, s.fallback, inflight,
            fresh, signals, release), session, movable)
    except NoAccount as e:
        return Refusal(explain(e, tables.health, accounts, pinned, session, s.fallback, now))
    account = decision.account
    tokens = None
    if account.oauth is not None:
        login = tables.logins.get(account.alias)
        if login is None or login.expired(now):
            if account.alias not in waited.refreshed:
                stale = fingerprint(login.tokens.access_token) if login is not None else None
                return NeedTokens(account.alias, stale)
            if login is None:  # account health takes it out; until then, never pass through
                return Refusal(NoAccount(route.provider, f"account {account.alias} has no "
                                                         "login to sign with"))
            # a refresh gave a token already past its expiry: the provider has the last word
        tokens = login.tokens
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
        # a subscription account's refused token is refreshed and the request sent again
        # to the same account, so any of its requests is worth keeping (hard pins too), but a
        # WebSocket handshake, which replay cannot send again
        keep_copy=incoming.attempt == 0 and (
            (account.oauth is not None and "upgrade" not in incoming.headers)
            or (incoming.has_body and (movable or not (session is not None and session.hard)))),
        tokens=tokens,
        prefix=Prefix(conversation, ttl) if conversation is not None else None,
        cache_ttl=asked,
        placed=decision.placed,
    )


def _cold_and_unwelcome(tables: Tables, session: SessionId | None, pin: Pin, ttl: float,
                        now: float) -> bool:
    """placement.let_go for a soft pin, its windows and health read only once it went cold."""
    idle = now - pin.last_used
    if session is None or session.hard or idle <= ttl:
        return False
    alias = pin.alias
    return let_go(hard=False, idle=idle, cache_ttl=ttl,
                  draining=tables.windows.draining(alias, now) or tables.windows.limited(
                      alias, now),
                  available=tables.health.available(alias, now))


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


def client_workspace(headers: Mapping[str, str]) -> str | None:
    """The ChatGPT workspace the client itself logged in with: the ChatGPT-Account-ID it sent,
    else the claim in its own access token (read here, never sent anywhere)."""
    sent = headers.get("chatgpt-account-id", "").strip()
    if sent:
        return sent[:128]
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return chatgpt_account_id(token.strip()) if scheme.lower() == "bearer" else None
