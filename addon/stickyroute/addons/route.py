"""The routing glue: options, lifecycle and the request hook. Reads top to bottom like a
request's path: classify -> identify -> choose -> rewrite. The way back (observe, learn) is
follow.py; the accounts file is accountsfile.py; the commands are commands.py.

It must never let an exception escape a hook on traffic (that would skip later addons for the
flow) and never log or store a credential.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mitmproxy import ctx, exceptions, http

from stickyroute.admin.views import describe
from stickyroute.config.accounts import Account, AccountsError, AccountSet
from stickyroute.config.accountsfile import WATCH_INTERVAL, AccountsFile, announce
from stickyroute.config.settings import OPTIONS, Settings, parse_settings
from stickyroute.core import peek, rewrite
from stickyroute.core.bodycap import decoded_body
from stickyroute.core.chains import ChainMap, follow_chain
from stickyroute.core.choose import Chooser, decide
from stickyroute.core.classify import Endpoint, classify
from stickyroute.core.errors import NoAccount
from stickyroute.core.fallback import (
    Kept,
    decide_or_move,
    drop_foreign_reasoning,
    explain,
    pools,
    portable,
)
from stickyroute.core.health import Health
from stickyroute.core.identify import SessionId, client_identity, identify
from stickyroute.core.ledger import Ledger, SweepStats
from stickyroute.core.pins import PinTable
from stickyroute.core.prices import PriceTable, parse_prices
from stickyroute.core.stop import Stop
from stickyroute.stores import share
from stickyroute.stores.base import MemoryStore, Store
from stickyroute.stores.claim import Claims

from .guard import CLIENT, CLIENT_ID, SIGNED
from .sweep import every, expire_all, expire_in_slices

logger = logging.getLogger("stickyroute")

META = "stickyroute"
ASKED = "stickyroute.chain_asked"  # the shared store was asked about previous_response_id
RETRY = "stickyroute.retry"  # set on a flow failover.py sends again: {"of", "attempt", "exclude"}


class StickyRoute:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.settings = Settings()
        self.accounts = AccountSet()
        self.accounts_file = AccountsFile(self._use_accounts)
        self._candidates: dict[str, list[Account]] = {}
        self.pins = PinTable(clock=clock)
        self.chains = ChainMap(clock=clock)
        self.prices = PriceTable()
        self.chooser = Chooser()
        self.ledger = Ledger()
        self.health = Health()  # the one place accounts leave rotation (operators too)
        self.client_requests = Kept[http.Request]()  # as they came in, for failover.py
        self.started = clock()
        self.sweeps = SweepStats()
        self._tasks: list[asyncio.Task[None]] = []
        self.store: Store = MemoryStore()  # persist.Persistence opens the configured one
        self.claims = Claims()
        self.stop = Stop()  # addons/shutdown.py moves it on when mitmproxy starts to stop

    # ---- options -----------------------------------------------------------------------
    def load(self, loader: Any) -> None:
        for name, typespec, default, help_text, choices in OPTIONS:
            loader.add_option(name, typespec, default, help_text, choices=choices)

    def configure(self, updated: set[str]) -> None:
        if not any(name.startswith("sticky_") for name in updated):
            return
        try:
            settings = parse_settings(lambda name: getattr(ctx.options, name))
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from None
        if "sticky_accounts" in updated:
            try:
                self.accounts_file.load(settings.accounts_path,
                                        ctx.options.default("sticky_accounts"))
            except AccountsError as e:
                raise exceptions.OptionsError(f"Cannot load sticky_accounts: {e}") from None
        self.settings = settings
        if self.chooser.strategy != settings.strategy:
            self.chooser = Chooser(settings.strategy)
        self.pins.idle_timeout = settings.idle_timeout
        self.pins.max_age = settings.max_age
        self.pins.max_size = settings.max_sessions
        self.chains.ttl = settings.max_age
        self.chains.max_size = 4 * settings.max_sessions

    def _use_accounts(self, accounts: AccountSet) -> None:
        self.health.new_accounts(self.accounts.accounts, accounts.accounts, self.clock())
        self.accounts = accounts
        self.prices = parse_prices(accounts.prices)  # load_checked checked it
        self._candidates = {
            p: [a for a in accounts.of_provider(p) if a.enabled]
            for p in {a.provider for a in accounts.accounts}
        }
        announce(accounts)

    # ---- lifecycle ---------------------------------------------------------------------
    def running(self) -> None:
        self._tasks = [asyncio.ensure_future(every(lambda: self.settings.sweep_interval,
                                                   self.sweep_in_slices)),
                       asyncio.ensure_future(every(lambda: WATCH_INTERVAL,
                                                   self.reload_accounts_if_changed))]

    def done(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    def sweep(self) -> int:
        return expire_all(self.pins, self.chains, self.sweeps, self.clock)

    async def sweep_in_slices(self) -> int:
        return await expire_in_slices(self.pins, self.chains, self.sweeps, self.clock)

    def reload_accounts_if_changed(self) -> bool:
        return self.accounts_file.reload_if_changed(self.settings.accounts_path)

    # ---- the request's path --------------------------------------------------------------
    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """Routes in place; returns an awaitable only when a shared store must be asked first."""
        if flow.response or flow.error or not flow.live:
            return None
        return self._route_safely(flow)

    def _route_safely(self, flow: http.HTTPFlow, only: str | None = None) -> Awaitable[None] | None:
        try:
            return self._route(flow, only)
        except Exception:
            # Never crash on traffic: the request goes on untouched, and we say so.
            logger.exception("stickyroute: could not route %s; passing it through",
                             flow.request.pretty_url)
            return None

    def _route(self, flow: http.HTTPFlow, only: str | None = None) -> Awaitable[None] | None:
        """`only`: the alias a shared store's claim settled on for this new session."""
        req = flow.request
        if req.scheme != "https":
            return None
        route = classify(self.accounts.provider_for_host(req.host.lower()), req.path)
        if route is None:
            return None  # not an account host: untouched, byte for byte
        raw = None
        if route.endpoint is not Endpoint.OTHER:
            raw = decoded_body(req.raw_content, req.headers.get("content-encoding", ""))
        s = self.settings
        now, retry = self.clock(), flow.metadata.get(RETRY) or {}
        session: SessionId | None = None
        client = flow.metadata.get(CLIENT_ID) or client_identity(req.headers)
        namespace = f"{route.provider}/{client}"
        if s.enabled:  # headers first: when they name the session the body may stay unparsed
            session = identify(route.provider, req.headers, None, s.session_headers,
                               client=client)
        responses = (route.endpoint is Endpoint.RESPONSES
                     and route.provider in ("openai", "chatgpt"))
        body = None
        if raw is not None and peek.body_needed(
                raw, identify_from_body=s.enabled and session is None, responses=responses,
                inject_cache_key=s.inject_cache_key, inject_include=s.inject_include):
            body = rewrite.parse_object(raw)
            if s.enabled and session is None:
                session = identify(route.provider, req.headers, body, s.session_headers,
                                   client=client)
        if s.enabled and body is not None and route.endpoint is Endpoint.RESPONSES:
            prev = None if ASKED in flow.metadata else share.unknown_previous(
                self.chains, self.store, namespace, body, now)
            if prev is not None:  # another proxy may have started this chain: ask once
                return self._fetch_chain_then_route(flow, namespace, prev)
            session = follow_chain(self.chains, self.pins, namespace, body, session, now)
        accounts = self._candidates.get(route.provider, [])
        gate_client = self.accounts.clients.get(flow.metadata.get(CLIENT, "")) \
            if self.accounts.clients else None
        if gate_client is not None:
            accounts = [a for a in accounts if gate_client.allows(a.alias)]
        ready, fresh = pools(accounts, self.health, now, retry.get("exclude", ()))
        if session is not None and self.store.shared and only is None and self.pins.get(
                session.key, now) is None:
            return self._claim_then_route(flow, session.key, fresh or ready)
        if only is not None:
            ready = fresh = [a for a in ready if a.alias == only] or ready
        movable = route.endpoint is Endpoint.RESPONSES and portable(body, s.fallback)
        # only least-inflight reads in-flight counts: don't build them for the others
        inflight = self.ledger.inflight(ready) if s.strategy == "least-inflight" else None
        try:
            decision, session = decide_or_move(lambda sid: decide(
                self.pins, self.chooser, route.provider, ready, sid, now, s.fallback,
                inflight, fresh), session, movable)
        except NoAccount as e:
            e = explain(e, self.health, accounts, self.pins, session, s.fallback, now)
            flow.response = http.Response.make(e.status, e.body(), e.headers())
            flow.metadata[META] = {"error": e.code, "message": e.message}
            logger.warning("stickyroute: %s %s -> %s: %s", route.provider, req.path, e.status, e)
            return None
        self.store.changed(decision.pin, decision.affinity)
        account = decision.account
        self.ledger[account.alias].count_request(decision.affinity)
        self.ledger[account.alias].inflight += 1
        if not retry and (movable or not (session and session.hard)) and req.raw_content:
            self.client_requests.keep(flow.id, req.copy())  # for a transparent retry
        credentials = account.credential_headers()
        rewrite.set_credentials(req.headers, credentials)
        flow.metadata[SIGNED] = [account.alias, [name for name, _ in credentials]]  # Guard masks
        injected: list[str] = []
        # (peek parses every body holding a reasoning item: none unparsed has one to drop)
        body, dropped = drop_foreign_reasoning(body if responses else None, decision.pin,
                                               decision.affinity == "moved")
        if dropped:  # the account cannot read another account's encrypted reasoning
            req.content = raw = json.dumps(body, ensure_ascii=False).encode()
        if body is not None and raw is not None and responses:
            cache_key = rewrite.cache_key_for(session.key) if (
                session and s.inject_cache_key) else None
            add = rewrite.wanted_fields(body, cache_key, s.inject_include)
            if add:
                req.content = rewrite.add_fields(raw, body, add)
                injected = sorted(add)
        meta = {
            "account": account.alias,
            "provider": route.provider,
            "endpoint": route.endpoint.value,
            "affinity": decision.affinity,
            "session": session.short if session else None,
            "session_source": session.source if session else None,
            "moved_from": decision.moved_from,
            "injected": injected,
            "request_bytes": len(req.raw_content or b""),
            "session_key": session.key if session else None,
            "client": client,
            "hard": bool(session and session.hard),
            "dropped_reasoning": dropped,
            "attempt": retry.get("attempt", 0),
            "inflight": True,  # counted in ledger; failover.py takes it off once
        }
        flow.metadata[META] = meta
        flow.comment = describe(meta)
        if decision.affinity == "moved":
            flow.marked = ":arrows_counterclockwise:"
        # The log line is written when the response is complete (follow.py), with its usage.
        return None

    async def _claim_then_route(self, flow: http.HTTPFlow, key: str,
                                candidates: Sequence[Account]) -> None:
        """A new session with a shared store: route on the account the first writer got."""
        alias = await self.claims.settle(key, candidates, self.chooser, self.pins, self.store,
                                         self.clock())
        self._route_safely(flow, only=alias or "")  # "": no answer, any account

    async def _fetch_chain_then_route(self, flow: http.HTTPFlow, namespace: str,
                                      prev: str) -> None:
        """A previous_response_id unknown here: learn it from the shared store, then route."""
        flow.metadata[ASKED] = True
        await share.fetch_chain(self.chains, self.store, namespace, prev, self.clock())
        result = self._route_safely(flow)
        if result is not None:  # a new session after all: claim it
            await result
