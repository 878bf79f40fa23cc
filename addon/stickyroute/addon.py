"""The mitmproxy glue: options, hooks and commands. Reads top to bottom like a request's path:
classify -> identify -> choose -> rewrite, then observe/learn on the way back.

The only module that touches mitmproxy. It must never let an exception escape a hook on
traffic (that would skip later addons for the flow) and never log or store a credential.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mitmproxy import command, ctx, exceptions, http

from . import masking, peek, rewrite, share, views
from .accounts import Account, AccountsError, AccountSet
from .bodycap import bounded_decode
from .chains import ChainMap, continue_session
from .choose import Chooser, decide
from .claim import Claims
from .classify import Endpoint, classify
from .errors import NoAccount
from .fallback import Kept, decide_or_move, drop_foreign_reasoning, explain, pools, portable
from .guard import CLIENT, CLIENT_ID, SIGNED
from .health import Health
from .identify import SessionId, client_identity, identify
from .ledger import Ledger, SweepStats
from .pins import PinTable
from .prices import PriceTable, load_checked, parse_prices
from .settings import OPTIONS, Settings, parse_settings
from .store import MemoryStore, Store

logger = logging.getLogger("stickyroute")

META = "stickyroute"
ASKED = "stickyroute.chain_asked"  # the shared store was asked about previous_response_id
RETRY = "stickyroute.retry"  # set on a flow failover.py sends again: {"of", "attempt", "exclude"}
MAX_BODY = 32 * 1024 * 1024  # decoded bytes we are willing to look at
WATCH_INTERVAL = 1.0
SWEEP_SLICE = 500  # pins per event-loop turn: well under 1 ms of work


class StickyRoute:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.settings = Settings()
        self.accounts = AccountSet()
        self._accounts_stamp: tuple[float, int] | None = None
        self._candidates: dict[str, list[Account]] = {}
        self.pins = PinTable(clock=clock)
        self.chains = ChainMap(clock=clock)
        self.prices = PriceTable()
        self.chooser = Chooser()
        self.ledger = Ledger()
        self.health = Health()
        self.client_requests = Kept[http.Request]()  # as they came in, for failover.py
        self.started = clock()
        # alias -> reason: views.py's fallback when there is no health tracker; with one,
        # operator disables go to self.health (and filter candidates there).
        self.operator_disabled: dict[str, str] = {}
        self.sweeps = SweepStats()
        self._tasks: list[asyncio.Task[None]] = []
        self.store: Store = MemoryStore()  # persist.Persistence opens the configured one
        self.claims = Claims()

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
            path = settings.accounts_path
            if not os.path.exists(path) and path == ctx.options.default("sticky_accounts"):
                # No file at the default place: say so (fatal at mitmdump's start, through its
                # error check) and run with no accounts until the file appears.
                logger.error("stickyroute: no accounts file %s: copy accounts.example.yaml "
                             "there or set sticky_accounts", os.path.abspath(path))
                self._set_accounts(AccountSet(), None)
            else:
                try:
                    self._set_accounts(load_checked(path), _stamp(path))
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

    def _set_accounts(self, accounts: AccountSet, stamp: tuple[float, int] | None) -> None:
        self.health.new_accounts(self.accounts.accounts, accounts.accounts, self.clock())
        self.accounts = accounts
        self.prices = parse_prices(accounts.prices)  # load_checked checked it
        self._accounts_stamp = stamp
        self._candidates = {
            p: [a for a in accounts.of_provider(p) if a.enabled]
            for p in {a.provider for a in accounts.accounts}
        }
        summary = ", ".join(f"{a.alias} ({a.provider}{'' if a.enabled else ', disabled'})"
                            for a in accounts.accounts)
        logger.info("stickyroute: %d accounts: %s", len(accounts.accounts), summary or "none")
        for path, mode in masking.loose_permissions(accounts.files):
            logger.warning("stickyroute: %s holds credentials but is readable by others (mode "
                           "%s): chmod 600 %s", path, mode, path)

    # ---- lifecycle ---------------------------------------------------------------------
    def running(self) -> None:
        self._tasks = [asyncio.ensure_future(self._every(lambda: self.settings.sweep_interval,
                                                         self.sweep_in_slices)),
                       asyncio.ensure_future(self._every(lambda: WATCH_INTERVAL,
                                                         self.reload_accounts_if_changed))]

    def done(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    async def _every(self, interval: Callable[[], float], job: Callable[[], object]) -> None:
        while True:
            await asyncio.sleep(interval())
            try:
                result = job()
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a background job must never die silently
                logger.exception("stickyroute: background job failed")

    def sweep(self) -> int:
        t0 = time.perf_counter()
        now = self.clock()
        gone = self.pins.expire(now)
        self.chains.expire(now)
        self.sweeps.add(time.perf_counter() - t0, len(gone))
        if gone:
            logger.debug("stickyroute: swept %d expired pins", len(gone))
        return len(gone)

    async def sweep_in_slices(self) -> int:
        """sweep(), SWEEP_SLICE pins at a time, letting requests run in between.

        Expiring 100 k pins in one call holds the event loop (every flow) for ~100 ms.
        """
        t0 = time.perf_counter()
        self.chains.expire(self.clock())  # not sliced yet: links expire a day after learning
        total, busy = 0, time.perf_counter() - t0
        while True:
            t0 = time.perf_counter()
            now = self.clock()
            total += len(self.pins.expire(now, limit=SWEEP_SLICE))
            pending = self.pins.expire_pending(now)
            busy += time.perf_counter() - t0  # the metric counts work, not the yields
            if not pending:
                break
            await asyncio.sleep(0)
        self.sweeps.add(busy, total)
        if total:
            logger.debug("stickyroute: swept %d expired pins", total)
        return total

    def reload_accounts_if_changed(self) -> bool:
        path = self.settings.accounts_path
        stamp = _stamp(path)
        if stamp == self._accounts_stamp:
            return False
        try:
            accounts = load_checked(path)
        except AccountsError as e:
            logger.warning("stickyroute: accounts file changed but cannot be used, keeping the "
                           "previous accounts: %s", e)
            self._accounts_stamp = stamp
            return False
        self._set_accounts(accounts, stamp)
        return True

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
        raw = _decoded_body(req) if route.endpoint is not Endpoint.OTHER else None
        s = self.settings
        session: SessionId | None = None
        client = flow.metadata.get(CLIENT_ID) or client_identity(req.headers)
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
                self.chains, self.store, f"{route.provider}/{client}", body, self.clock())
            if prev is not None:  # another proxy may have started this chain: ask once
                return self._fetch_chain_then_route(flow, f"{route.provider}/{client}", prev)
            session = self._chain(f"{route.provider}/{client}", body, session)
        now, retry = self.clock(), flow.metadata.get(RETRY) or {}
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
        try:
            decision, session = decide_or_move(lambda sid: decide(
                self.pins, self.chooser, route.provider, ready, sid, now, s.fallback,
                self.ledger.inflight(ready), fresh), session, movable)
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
        flow.comment = _describe(meta)
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

    def _chain(self, namespace: str, body: dict[str, Any],
               session: SessionId | None) -> SessionId | None:
        """Identity step 4: a request continuing a known response goes where its state is."""
        now = self.clock()
        link = self.chains.find(namespace, body, now)
        if link is None:
            return session
        pin = self.pins.get(link.session, now)
        if pin is None or pin.alias != link.alias:
            self.pins.put(link.session, link.alias, now)  # the state, not the pin, has the say
        return continue_session(session, link)

    # ---- commands ----------------------------------------------------------------------
    @command.command("sticky.sessions")
    def sessions_command(self) -> Sequence[str]:
        """List live pins, most recent first: session, account, requests, idle, cache."""
        now = self.clock()
        return [views.session_line(p, now) for p in reversed(list(self.pins))]

    @command.command("sticky.accounts")
    def accounts_command(self) -> Sequence[str]:
        """List accounts: provider, health, pinned sessions, in-flight, requests, cache."""
        now = self.clock()
        return [views.account_line(self, a, now) for a in self.accounts.accounts]

    @command.command("sticky.evict")
    def evict_command(self, session: str) -> str:
        """Forget one session's pin (full key, its last part, or the short form shown in logs);
        its next request is pinned again."""
        keys = views.evict(self, session)
        if not keys:
            raise exceptions.CommandError(f"no pinned session {session!r}")
        logger.info("stickyroute: evicted %d pin(s) for session %s", len(keys), session)
        return f"evicted {', '.join(keys)}"

    @command.command("sticky.evict.account")
    def evict_account_command(self, alias: str) -> str:
        """Forget every pin of one account."""
        if self.accounts.get(alias) is None:
            raise exceptions.CommandError(f"no account {alias!r}")
        gone = views.evict_account(self, alias)
        logger.info("stickyroute: evicted %d pin(s) of account %s", len(gone), alias)
        return f"evicted {len(gone)} pin(s) of {alias}"


def _stamp(path: str) -> tuple[float, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime, st.st_size)


def _decoded_body(req: http.Request) -> bytes | None:
    """The body without its content encoding, decoded no further than MAX_BODY (a bomb stops
    there); None when we should not look at it."""
    if not req.raw_content:
        return None
    return bounded_decode(req.raw_content, req.headers.get("content-encoding", ""), MAX_BODY)


def _describe(meta: dict[str, Any]) -> str:
    parts = [f"{meta['endpoint']} -> {meta['account']}"]
    if meta["session"]:
        parts.append(f"session {meta['session']} ({meta['session_source']})")
    affinity = meta["affinity"]
    if meta.get("moved_from"):
        affinity += f" from {meta['moved_from']}"
    parts.append(affinity)
    parts.append(f"{meta['request_bytes']} B")
    if meta["injected"]:
        parts.append("+" + ",".join(meta["injected"]))
    parts += [f"dropped {meta['dropped_reasoning']} encrypted reasoning item(s)"] * bool(
        meta.get("dropped_reasoning")) + [f"retry {meta['attempt']}"] * bool(meta.get("attempt"))
    return " | ".join(parts)
