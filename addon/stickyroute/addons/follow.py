"""Steps 5 and 6, the glue on the way back: observe every routed response, learn from it, log it.

Usage windows are learnt from every answer's headers (failover.py's responseheaders, with the
rest of account health) and from Codex's `codex.rate_limits` stream event (here); an account
that starts or stops draining gets one log line (note_windows).

SSE streams keep flowing chunk by chunk: the stream callable feeds a copy of each chunk to the
observer and hands the chunk on unchanged. WebSocket turns (Codex's Responses transport) are
followed frame by frame; a prewarm frame is logged as such and never counted as a turn. Never
raises out of a hook, never holds a whole stream in memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from typing import cast

import mitmproxy.log
from mitmproxy import http, websocket

from stickyroute.core import rewrite
from stickyroute.core.bodycap import MAX_BODY
from stickyroute.core.headers import field
from stickyroute.core.logline import describe, describe_result
from stickyroute.core.observe import SKIPPED_EVENTS, Observer
from stickyroute.core.sse import Batch, SseParser, decoder_for, parse_all
from stickyroute.core.stop import STOPPED_BY_SHUTDOWN
from stickyroute.core.windows import Reading, from_codex_event
from stickyroute.core.wsturn import frame_turn
from stickyroute.keys import META, RouteMeta
from stickyroute.log import WithoutRequestLines, get_logger, request_line
from stickyroute.state import State
from stickyroute.stores.share import publish_chain

from .shutdown import stopping

logger = get_logger(__name__)


class _Stream:
    """The callable mitmproxy streams a response body through (observed in batches)."""

    def __init__(self, observer: Observer, decode: Callable[[bytes], bytes] | None) -> None:
        self.observer = observer
        self.decode = decode
        self.parser = SseParser(skip=SKIPPED_EVENTS, ignorable=observer.ignorable)
        self.batch = Batch()

    def __call__(self, chunk: bytes) -> bytes:
        if self.decode is not None:
            if not chunk:  # the end of the answer
                self.observe(self.batch.take(), end=True)
            elif (data := self.batch.add(chunk)) is not None:
                self.observe(data)
        return chunk

    def observe(self, data: bytes, end: bool = False) -> None:
        """Feed what was collected to the observer (`end`: the stream is complete)."""
        if self.decode is None:
            return
        try:
            if data:  # events() as the observer goes: what it learns lets the next ones drop
                for ev in self.parser.events(self.decode(data)):
                    self.observer.event(ev.event, ev.data)
            for ev in self.parser.close() if end else ():
                self.observer.event(ev.event, ev.data)
        except Exception as e:  # corrupt encoding, or a bug: stop looking, keep streaming
            logger.warning("stopped observing a stream: %s", e)
            self.decode = None


class Follow:
    def __init__(self, state: State) -> None:
        self.state = state
        self._streams: dict[str, _Stream] = {}
        self._turns: dict[str, Observer] = {}  # WebSocket flow id -> the turn in progress
        # WebSocket flow id -> the alias whose in-flight count a client's turn holds: a stop
        # drains these like requests upstream, so their answers are learned before the save
        self._open: dict[str, str] = {}
        self._said: set[str] = set()

    def running(self) -> None:
        for handler in logging.getLogger().handlers:  # the deprecated add_log event's
            if isinstance(handler, mitmproxy.log.LegacyLogEvents) and not any(
                    isinstance(f, WithoutRequestLines) for f in handler.filters):
                handler.addFilter(WithoutRequestLines())

    # ---- HTTP --------------------------------------------------------------------------
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        meta = routed(flow)
        resp = flow.response
        if meta is None or resp is None or resp.status_code != 200:
            return
        if "text/event-stream" not in (field(resp.headers, "content-type") or "").lower():
            return  # JSON is small and buffered: the response hook reads it whole
        encoding = field(resp.headers, "content-encoding") or ""
        decode = decoder_for(encoding)
        if decode is None and encoding not in self._said:
            self._said.add(encoding)
            logger.warning("cannot decode %r streams: such responses stream through "
                           "unobserved (no usage, no chain)", encoding)
        stream = _Stream(Observer(meta["endpoint"]), decode)
        resp.stream = stream
        self._streams[flow.id] = stream

    def response(self, flow: http.HTTPFlow) -> None:
        stream = self._streams.pop(flow.id, None)
        meta = routed(flow)
        if meta is None or flow.response is None:
            return
        try:
            if flow.websocket is not None:
                logger.info("%s | websocket open", describe(meta))
                return
            observer = stream.observer if stream else self._read_body(flow, meta["endpoint"])
            self._learn(flow, meta, observer, flow.response.status_code)
        except Exception:
            logger.exception("could not observe the response of %s",
                             flow.request.pretty_url)

    def error(self, flow: http.HTTPFlow) -> None:
        stream = self._streams.pop(flow.id, None)
        meta = routed(flow)
        if meta is None or flow.error is None:
            return
        if stream is not None:
            stream.observe(stream.batch.take())  # what arrived before the cut
        if stream is not None and stream.observer.usage is not None:
            self._learn(flow, meta, stream.observer, None)
        if stopping(self.state):  # the proxy's own stop cut it: no failure of the account
            logger.info("%s | %s (%s)", describe(meta), STOPPED_BY_SHUTDOWN, flow.error.msg)
        else:
            logger.warning("%s | failed: %s", describe(meta), flow.error.msg)

    def _read_body(self, flow: http.HTTPFlow, endpoint: str) -> Observer:
        observer = Observer(endpoint)
        resp = flow.response
        assert resp is not None
        if not resp.raw_content or len(resp.raw_content) > MAX_BODY or (
                endpoint == "other" and resp.status_code < 400):
            return observer  # model lists, file downloads...: nothing to learn, no parsing
        try:
            content = resp.get_content(strict=True) or b""
        except ValueError:
            return observer
        if resp.status_code >= 400:
            observer.error_text(content[:MAX_BODY].decode("utf-8", "replace"))
        elif "text/event-stream" in (field(resp.headers, "content-type") or "").lower():
            for ev in parse_all(content):
                observer.event(ev.event, ev.data)
        else:
            body = rewrite.parse_object(content)
            if body is not None:
                observer.body(body)
        return observer

    # ---- learning ----------------------------------------------------------------------
    def _learn(self, flow: http.HTTPFlow, meta: RouteMeta, obs: Observer,
               status: int | None) -> None:
        st = self.state
        now = st.clock()
        alias = meta["account"]
        stats = st.ledger[alias]
        meta["status"], meta["response_id"], meta["model"] = status, obs.response_id, obs.model
        meta["error"], meta["tokens_in"], meta["affinity_break"] = obs.error, None, None
        if obs.usage is not None:
            u = obs.usage
            cost, priced = st.prices.cost(obs.model, u)
            stats.tokens_in += u.input
            stats.tokens_out += u.output
            stats.tokens_cached += u.cached
            stats.cost_micros += cost
            key = meta["session_key"]
            pin = st.pins.get(key, now) if key else None
            if pin is not None and pin.alias == alias:
                pin.tokens_in += u.input
                pin.tokens_out += u.output
                pin.tokens_cached += u.cached
                pin.cost_micros += cost
            meta["tokens_in"], meta["tokens_out"], meta["tokens_cached"] = (
                u.input, u.output, u.cached)
            meta["cache_ratio"], meta["cost_micros"], meta["priced"] = u.cache_ratio, cost, priced
        if obs.response_id and meta["endpoint"] == "responses" and not obs.error:
            namespace = f"{meta['provider']}/{meta['client']}"
            session = meta["session_key"] or f"{namespace}/chain-{obs.response_id}"
            ids = [obs.response_id, *obs.reasoning_ids]
            st.chains.learn(namespace, ids, session, alias, now)
            publish_chain(st.store, namespace, ids, session, alias, st.chains.ttl)
        if obs.rate_limits is not None:
            note_windows(st, alias, from_codex_event(obs.rate_limits, now), now)
        if obs.affinity_break:
            stats.affinity_breaks += 1
            meta["affinity_break"] = obs.affinity_break
            logger.warning("AFFINITY BREAK on account %s (%s): a conversation's state was not "
                           "where it was sent; breaks on this account so far: %d | %s", alias,
                           obs.affinity_break, stats.affinity_breaks, describe(meta))
        line = describe_result(meta)
        flow.comment = line
        request_line(line)

    # ---- WebSocket (the Responses API over wss://) ----------------------------------------
    def websocket_message(self, flow: http.HTTPFlow) -> None:
        meta = routed(flow)
        if meta is None or flow.websocket is None:
            return
        message = flow.websocket.messages[-1]
        try:
            if message.from_client:
                self._client_frame(flow, meta, message)
            elif message.is_text:
                obj = rewrite.parse_object(message.content)
                if obj is None:
                    return
                turn = self._turns.setdefault(flow.id, Observer("responses"))
                if obj.get("type") in ("error", "response.failed"):
                    turn.event(obj["type"], message.content.decode("utf-8", "replace"))
                else:
                    turn.message(obj)
                if turn.completed or turn.error:
                    del self._turns[flow.id]
                    try:
                        self._learn(flow, meta, turn, 101)
                    finally:
                        self._turn_over(flow)
        except Exception:
            logger.exception("could not follow a WebSocket frame")

    def _client_frame(self, flow: http.HTTPFlow, meta: RouteMeta,
                      message: websocket.WebSocketMessage) -> None:
        frame = rewrite.parse_object(message.content) if message.is_text else None
        if frame is None or frame.get("type") != "response.create":
            return
        nested = isinstance(frame.get("response"), dict)
        request = cast(dict[str, object], frame["response"]) if nested else frame
        st = self.state
        now = st.clock()
        turn = frame_turn(request, meta.get("turns", 0))
        meta["turns"], meta["prewarm"] = turn.turns, turn.prewarm
        if turn.counts:
            meta["affinity"] = "hit"
            st.ledger[meta["account"]].count_request("hit")
            key = meta["session_key"]
            pin = st.pins.get(key, now) if key else None
            if pin is not None:
                st.pins.touch(pin, now)
        link = st.chains.find(f"{meta['provider']}/{meta['client']}", request, now)
        if link is not None and link.alias != meta["account"]:
            logger.warning("a WebSocket on account %s continues state of account %s; it cannot "
                           "move now (give the connection a session header)", meta["account"],
                           link.alias)
        key = meta["session_key"]
        cache_key = rewrite.cache_key_for(key) if key and st.settings.inject_cache_key else None
        add = rewrite.wanted_fields(request, cache_key, st.settings.inject_include)
        if add:
            if nested:
                frame["response"] = {**request, **add}
                message.content = json.dumps(frame, ensure_ascii=False).encode()
            else:
                message.content = rewrite.add_fields(message.content, frame, add)
        meta["injected"] = sorted(add)
        meta["request_bytes"] = len(message.content)
        self._turns[flow.id] = Observer("responses")
        self._turn_over(flow)  # the protocol is one turn at a time; never count one twice
        st.ledger[meta["account"]].inflight += 1
        self._open[flow.id] = meta["account"]

    def _turn_over(self, flow: http.HTTPFlow) -> None:
        alias = self._open.pop(flow.id, None)
        if alias is not None:
            self.state.ledger[alias].inflight -= 1

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        turn = self._turns.pop(flow.id, None)
        meta = routed(flow)
        if turn is not None and meta is not None and turn.usage is not None:
            with contextlib.suppress(Exception):
                self._learn(flow, meta, turn, 101)
        self._turn_over(flow)


def note_windows(state: State, alias: str, reading: Reading, now: float) -> None:
    """Take what one answer says of an account's usage windows; say so when it starts or stops
    draining (a change, so one line each way, however many answers say the same)."""
    drain = state.windows.record(alias, reading, now)
    if drain is None:
        return
    if drain.draining and drain.window is not None:
        w = drain.window
        logger.warning("account %s is draining: %.4g%% of its %d-minute window used; new "
                       "conversations go elsewhere", alias, w.used_percent, w.minutes)
    else:
        logger.info("account %s stopped draining", alias)


def routed(flow: http.HTTPFlow) -> RouteMeta | None:
    """The flow's RouteMeta when routing sent it to an account (not refused, not ours)."""
    meta = flow.metadata.get(META)
    return cast(RouteMeta, meta) if isinstance(meta, dict) and "account" in meta else None
