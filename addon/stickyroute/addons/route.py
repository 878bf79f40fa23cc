"""Glue for the way in: the request hook. Reads a request into a view, lets the core plan it,
waits on the shared store or on an expired login's refresh when the plan says so, then applies
the plan to the flow (a subscription account signs with its login's current tokens).

classify (step 1) happens here; identify, choose and the body edits (steps 2-4) are
core/plan.py's; the way back (steps 5-6) is follow.py and failover.py. mitmproxy's addon
manager catches an exception that escapes a hook and goes on with the next addon, which would
leave this flow half-routed: so none escapes, the request passes through untouched and we say
so. Never logs or stores a credential (flow metadata keeps a login token's fingerprint only).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import cast

from mitmproxy import http

from stickyroute.core import rewrite
from stickyroute.core.choose import Affinity
from stickyroute.core.classify import Endpoint, classify
from stickyroute.core.fallback import FOREIGN
from stickyroute.core.headers import lowered
from stickyroute.core.identify import client_identity
from stickyroute.core.logline import describe
from stickyroute.core.oauth import fingerprint, merge_beta
from stickyroute.core.plan import (
    NOTHING_ASKED,
    Answer,
    Claim,
    Incoming,
    NeedChain,
    NeedClaim,
    NeedTokens,
    Plan,
    Reading,
    Refusal,
    Waited,
    plan,
    read,
)
from stickyroute.keys import (
    CLIENT,
    CLIENT_ID,
    META,
    RETRY,
    SIGNED,
    AnsweredMeta,
    RefusedMeta,
    RetryNote,
    RouteMeta,
)
from stickyroute.log import get_logger
from stickyroute.state import Kept, State
from stickyroute.stores.share import fetch_chain

logger = get_logger(__name__)


class StickyRoute:
    def __init__(self, state: State, kept: Kept[http.Request]) -> None:
        self.state = state
        self.kept = kept  # client requests as they came in, for failover's retries

    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """Routes in place; returns an awaitable only when a shared store must be asked first
        or an expired login must be refreshed first."""
        if flow.response or flow.error or not flow.live:
            return None
        try:
            incoming = self._incoming(flow)
            if incoming is None:
                return None  # not an account host: untouched, byte for byte
            st = self.state
            now = st.clock()
            reading = read(incoming, st.settings, lambda key: st.pins.get(key, now) is not None)
        except Exception:
            self._failed(flow)
            return None
        return self._route(flow, incoming, reading, NOTHING_ASKED)

    def _incoming(self, flow: http.HTTPFlow) -> Incoming | None:
        req, st = flow.request, self.state
        if req.scheme != "https":
            return None
        route = classify(st.accounts.provider_for_host(req.host.lower()), req.path)
        if route is None:
            return None
        headers = lowered(req.headers)  # one pass: identity asks for a dozen names
        gate = st.accounts.clients
        retry = cast(RetryNote | None, flow.metadata.get(RETRY))
        return Incoming(
            route=route,
            headers=headers,
            raw=req.raw_content if route.endpoint is not Endpoint.OTHER else None,
            encoding=headers.get("content-encoding", ""),
            client=flow.metadata.get(CLIENT_ID) or client_identity(headers),
            gate=gate.get(flow.metadata.get(CLIENT, "")) if gate is not None else None,
            attempt=retry["attempt"] if retry else 0,
            exclude=frozenset(retry["exclude"]) if retry else frozenset(),
            has_body=bool(req.raw_content),
        )

    def _route(self, flow: http.HTTPFlow, incoming: Incoming, reading: Reading,
               waited: Waited) -> Awaitable[None] | None:
        try:
            now = self.state.clock()
            match plan(incoming, reading, self.state, now, waited):
                case NeedChain() as need:
                    return self._chain_then_route(flow, incoming, reading, waited, need)
                case NeedClaim() as need:
                    return self._claim_then_route(flow, incoming, reading, waited, need)
                case NeedTokens() as need:
                    return self._tokens_then_route(flow, incoming, reading, waited, need)
                case Refusal(error=e):
                    flow.response = http.Response.make(e.status, e.body(), e.headers())
                    flow.metadata[META] = RefusedMeta(error=e.code, message=e.message)
                    logger.warning("%s %s -> %s: %s", incoming.route.provider, flow.request.path,
                                   e.status, e)
                case Answer() as answer:
                    flow.response = http.Response.make(
                        answer.status, answer.body,
                        {"content-type": "application/json",
                         "x-stickyroute-answered": answer.what.replace(" ", "-")})
                    flow.metadata[META] = AnsweredMeta(answered=answer.what)
                    logger.info("%s %s -> %s: answered by the proxy (%s)",
                                incoming.route.provider, flow.request.path, answer.status,
                                answer.what)
                case Plan() as p:
                    self._apply(flow, incoming, p, now)
        except Exception:
            self._failed(flow)
        return None

    async def _chain_then_route(self, flow: http.HTTPFlow, incoming: Incoming, reading: Reading,
                                waited: Waited, need: NeedChain) -> None:
        """A previous_response_id unknown here: learn it from the shared store, then route."""
        st = self.state
        await fetch_chain(st.chains, st.store, need.namespace, need.response_id, st.clock())
        then = self._route(flow, incoming, reading, waited._replace(chain_asked=True))
        if then is not None:  # a new session after all: claim it
            await then

    async def _claim_then_route(self, flow: http.HTTPFlow, incoming: Incoming,
                                reading: Reading, waited: Waited, need: NeedClaim) -> None:
        """A new session with a shared store: route on the account the first writer got."""
        st = self.state
        alias = await st.claims.settle(need.session, need.candidates, st.chooser, st.pins,
                                       st.store, st.clock(), need.inflight, need.signals)
        then = self._route(flow, incoming, reading, waited._replace(claim=Claim(alias)))
        if then is not None:  # the account's login must be refreshed first
            await then

    async def _tokens_then_route(self, flow: http.HTTPFlow, incoming: Incoming,
                                 reading: Reading, waited: Waited, need: NeedTokens) -> None:
        """A subscription account's access token has expired: wait for the one refresh of its
        login (other requests waiting for it share it), take the outcome into account health
        (a dead login moves soft pins, a hard pin gets its clear refusal), then route."""
        st = self.state
        try:
            # by fingerprint: a refresh that ended since the plan is not run again
            await st.refresher.refresh(need.alias, stale=need.stale)
            st.sync_logins()
        except Exception:
            self._failed(flow)
            return
        then = self._route(flow, incoming, reading,
                           waited._replace(refreshed=waited.refreshed | {need.alias}))
        if then is not None:  # another account's login, or a claim: wait for that too
            await then

    def _apply(self, flow: http.HTTPFlow, incoming: Incoming, p: Plan, now: float) -> None:
        st, req = self.state, flow.request
        alias = p.account.alias
        # First what can fail: nothing is counted or written for a request we cannot sign.
        credentials = p.account.credential_headers(p.tokens)
        if p.keep_copy:
            self.kept.keep(flow.id, copy_request(req))  # before it becomes the account's
        rewrite.set_credentials(req.headers, credentials)
        if p.tokens is not None and p.account.provider == "anthropic":
            # a Bearer login is taken only with the oauth beta, next to the client's own flags
            req.headers["anthropic-beta"] = merge_beta(req.headers.get_all("anthropic-beta"))
        flow.metadata[SIGNED] = [alias, [name for name, _ in credentials]]  # the guard masks
        if p.body is not None:
            req.content = p.body  # mitmproxy encodes it as the client did
        pin = p.pin
        if p.session is not None:
            if p.repin or pin is None:
                pin, _ = st.pins.put(p.session.key, alias, now)
            st.pins.touch(pin, now)
            if p.prefix is not None:
                pin.prefix = p.prefix.key
            if p.cache_ttl is not None:
                pin.cache_ttl = p.cache_ttl
            if p.affinity is Affinity.MOVED and p.dropped:
                pin.extra = {**(pin.extra or {}), FOREIGN: set(p.dropped)}
        if p.prefix is not None:  # now, not on the answer: concurrent first turns see it
            st.warm.touch(alias, p.prefix, now)
        st.store.changed(pin, p.affinity)
        stats = st.ledger[alias]
        stats.count_request(p.affinity)
        session = p.session
        meta = RouteMeta(
            account=alias,
            provider=incoming.route.provider,
            endpoint=incoming.route.endpoint.value,
            affinity=p.affinity.value,
            session=session.short if session else None,
            session_source=session.source if session else None,
            session_key=session.key if session else None,
            moved_from=p.moved_from,
            placed=p.placed,
            injected=list(p.injected),
            request_bytes=len(req.raw_content or b""),
            client=incoming.client,
            hard=bool(session and session.hard),
            dropped_reasoning=len(p.dropped),
            attempt=incoming.attempt,
            inflight=True,  # counted in the ledger; failover takes it off once
        )
        if p.tokens is not None:  # what a 401 is matched against; never the token itself
            meta["token_fingerprint"] = fingerprint(p.tokens.access_token)
        flow.metadata[META] = meta
        stats.inflight += 1  # with the meta that lets failover take it off, never apart
        flow.comment = describe(meta)
        if p.affinity is Affinity.MOVED:
            flow.marked = ":arrows_counterclockwise:"
        # The log line is written when the response is complete (follow.py), with its usage.

    @staticmethod
    def _failed(flow: http.HTTPFlow) -> None:
        # Never crash on traffic: the request goes on untouched, and we say so.
        logger.exception("could not route %s; passing it through", flow.request.pretty_url)


def copy_request(req: http.Request) -> http.Request:
    """A copy that later edits of `req` leave alone, as `req.copy()` makes, for a fraction of
    its cost (~1 µs instead of ~28): mitmproxy's copy round-trips the request through its
    serialised state with a type check per field, on every routed request. Headers replace
    their fields tuple on every edit and bodies are immutable bytes, so sharing both until an
    edit is safe."""
    data = _shallow(req.data)
    data.headers = _shallow(req.data.headers)
    if data.trailers is not None:
        data.trailers = _shallow(data.trailers)
    kept = http.Request.__new__(http.Request)
    kept.data = data
    return kept


def _shallow[T](obj: T) -> T:
    """copy.copy for a plain object, without its reduce protocol (a third of the cost here)."""
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    return new
