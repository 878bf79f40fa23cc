"""Shared builders for unit tests: a fake clock, flows and answers, SSE samples, the addons
around one State, and the admin API's test token. Fixtures live in conftest.py files."""

from __future__ import annotations

import asyncio
import functools
import gzip
import hashlib
import json
from collections.abc import Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mitmproxy import http, websocket
from mitmproxy.test import taddons, tflow, tutils

from stickyroute import Addons, build
from stickyroute.addons.follow import Follow
from stickyroute.admin.api import AdminApi, Reply
from stickyroute.config.oauth import LoginSource, Tokens
from stickyroute.core.logins import Logins
from stickyroute.core.oauth import TokenRequest
from stickyroute.keys import RouteMeta
from stickyroute.state import State

ACCOUNTS = """\
accounts:
  - alias: oa
    provider: openai
    api_key: sk-acct-oa
  - alias: ob
    provider: openai
    api_key: sk-acct-ob
  - alias: an
    provider: anthropic
    api_key: sk-ant-acct
  - alias: cg
    provider: chatgpt
    api_key: tok
    account_id: id-1
    enabled: false
"""
CLIENT_KEY = "Bearer sk-client-placeholder"  # what a client sends when the proxy holds the keys


class Clock:
    """A clock tests move by hand (`clock.t += 61`)."""

    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    @property
    def now(self) -> float:
        return self.t

    @now.setter
    def now(self, value: float) -> None:
        self.t = value


def addons(clock: Clock | None = None) -> Addons:
    """stickyroute's addons around a fresh State on this clock (not configured yet)."""
    return build(State(clock=clock or Clock()))


@contextmanager
def configured(accounts: Path, clock: Clock | None = None, **options: Any
               ) -> Iterator[tuple[Addons, taddons.context]]:
    """The addons loaded into a test mitmproxy context, configured with this accounts file."""
    a = addons(clock)
    with taddons.context(*a) as tctx:
        tctx.configure(a.options, sticky_accounts=str(accounts), **options)
        yield a, tctx


# ---- requests and answers ------------------------------------------------------------------

def flow(host: str = "api.openai.com", path: str = "/v1/responses", body: Any = None,
         headers: Iterable[tuple[str, str]] = (), scheme: str = "https",
         raw: bytes | None = None, auth: str | None = CLIENT_KEY) -> http.HTTPFlow:
    """A live request flow from a client that sent its own key (`auth`; None: no key)."""
    req = tutils.treq(host=host, port=443, scheme=scheme.encode(), path=path.encode(),
                      method=b"POST", content=b"")
    req.headers.clear()
    if auth is not None:
        req.headers["authorization"] = auth
    req.headers["content-type"] = "application/json"
    for k, v in headers:
        req.headers[k] = v
    if raw is not None:
        req.raw_content = raw
    elif body is not None:
        req.content = json.dumps(body).encode()
    return tflow.tflow(req=req)


def respond(f: http.HTTPFlow, follow: Follow, body: Any, status: int = 200, sse: bool = False,
            chunks: int = 7, encoding: str | None = None) -> RouteMeta:
    """Answer a routed flow through Follow's hooks (SSE: streamed in `chunks`-byte pieces);
    returns the flow's RouteMeta."""
    headers = {"content-type": "text/event-stream" if sse else "application/json"}
    f.response = http.Response.make(status, b"", headers)
    if encoding:  # after make(): it would encode the empty body itself
        f.response.headers["content-encoding"] = encoding
    follow.responseheaders(f)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    if callable(f.response.stream):
        raw = gzip.compress(data) if encoding == "gzip" else data
        out = b"".join(f.response.stream(raw[i:i + chunks]) for i in range(0, len(raw), chunks))
        assert out == raw and f.response.stream(b"") == b""  # chunks pass unchanged
        f.response.content = None
    else:
        f.response.content = data
    follow.response(f)
    meta: RouteMeta = f.metadata["stickyroute"]
    return meta


def resp_body(rid: str, reasoning: str | None = None, cached: int = 0,
              model: str = "gpt-fake") -> dict[str, Any]:
    """A Responses API answer: 1000 tokens in, 100 out, `cached` of them from the cache."""
    output = [{"type": "reasoning", "id": reasoning}] if reasoning else []
    return {"id": rid, "model": model, "output": output, "usage": {
        "input_tokens": 1000, "output_tokens": 100, "input_tokens_details": {"cached_tokens": cached}}}


# ---- SSE samples: one stream per API, as the providers send them ----------------------------

def sse(event: str | None, data: Any, nl: str = "\n") -> bytes:
    head = f"event: {event}{nl}" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {payload}{nl}{nl}".encode()


RESPONSES_STREAM = b"".join([
    sse("response.created", {"type": "response.created", "response": {
        "id": "resp_1", "model": "gpt-5-2025-08-07", "output": [], "usage": None}}),
    b": keep-alive\n\n",
    sse("response.output_item.done", {"type": "response.output_item.done", "item": {
        "id": "rs_1", "type": "reasoning", "encrypted_content": "x" * 300}}, nl="\r\n"),
    sse("response.output_text.delta", {"type": "response.output_text.delta",
                                       "delta": "h\u00e9llo \u2603 \U0001f600"}),
    sse("response.completed", {"type": "response.completed", "response": {
        "id": "resp_1", "model": "gpt-5-2025-08-07",
        "output": [{"id": "rs_1", "type": "reasoning"}, {"id": "msg_1", "type": "message"}],
        "usage": {"input_tokens": 2000, "input_tokens_details": {"cached_tokens": 1536},
                  "output_tokens": 40, "output_tokens_details": {"reasoning_tokens": 12}}}},
        nl="\r\n"),
])
CHAT_STREAM = b"".join([
    sse(None, {"id": "chatcmpl-1", "model": "gpt-4o", "choices": [{"delta": {"content": "a"}}]}),
    sse(None, {"id": "chatcmpl-1", "model": "gpt-4o", "choices": [],
               "usage": {"prompt_tokens": 1200, "completion_tokens": 9,
                         "prompt_tokens_details": {"cached_tokens": 1024}}}),
    sse(None, "[DONE]"),
])
ANTHROPIC_STREAM = b"".join([
    sse("message_start", {"type": "message_start", "message": {
        "id": "msg_01", "model": "claude-sonnet-4-5-20250929",
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 3000,
                  "cache_creation_input_tokens": 200, "output_tokens": 1}}}),
    sse("ping", {"type": "ping"}),
    sse("message_delta", {"type": "message_delta", "usage": {"output_tokens": 77}}),
    sse("message_stop", {"type": "message_stop"}),
])


# ---- the admin surface ---------------------------------------------------------------------

ADMIN_TOKEN = "admin-token-123"
ADMIN_AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def api_call(api: AdminApi, method: str, target: str, body: bytes = b"",
             headers: dict[str, str] = ADMIN_AUTH) -> tuple[Reply, Any]:
    """One admin API request: (reply, its JSON document or raw body)."""
    reply = api.handle(method, target, headers, body)
    data = json.loads(reply.body) if reply.content_type == "application/json" else reply.body
    return reply, data


def route_session(sticky: Addons, session: str, host: str = "api.openai.com") -> RouteMeta:
    """Route one request of conversation `session` (a session-id header); its RouteMeta."""
    f = flow(host=host, path="/v1/responses" if "openai" in host else "/v1/messages",
             body={"model": "m", "input": "x"}, headers=[("session-id", session)])
    sticky.route.request(f)
    meta: RouteMeta = f.metadata["stickyroute"]
    return meta


def token_sha(token: str) -> str:
    """A client token's `token_hash` as an accounts file writes it."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


# ---- OAuth refresh: an injected token endpoint and login files in memory ----

def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """An async test run to completion on a fresh event loop."""

    @functools.wraps(test)
    def sync(*args: Any, **kw: Any) -> None:
        asyncio.run(test(*args, **kw))

    return sync


class TokenEndpoint:
    """An injected POST: answers from a script, counts calls, can hold answers back."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []
        self.gate: asyncio.Event | None = None
        self.n = 0

    async def __call__(self, request: TokenRequest, timeout: float) -> tuple[int, bytes]:
        self.calls.append(json.loads(request.body))
        if self.gate is not None:
            await self.gate.wait()
        answer = self.answers.pop(0) if self.answers else "ok"
        if isinstance(answer, BaseException):
            raise answer
        if answer == "ok":
            self.n += 1
            return 200, json.dumps({"access_token": f"access-{self.n}",
                                    "refresh_token": f"refresh-{self.n}",
                                    "expires_in": 3600}).encode()
        status, body = answer
        return status, json.dumps(body).encode()


class LoginDisk:
    """Injected save/load: one login file per source, and what was held at each save."""

    def __init__(self, logins: Logins) -> None:
        self.logins = logins
        self.files: dict[str, Tokens] = {}
        self.held_at_save: list[Tokens | None] = []
        self.broken = False

    def save(self, source: LoginSource, tokens: Tokens, now: float) -> None:
        if self.broken:
            raise OSError(28, "No space left on device")
        self.held_at_save.append(self.logins.tokens("a"))
        self.files[source.file] = tokens

    def load(self, source: LoginSource) -> Tokens:
        if source.file not in self.files:
            raise ValueError("no file")
        return self.files[source.file]


# ---- Responses over a WebSocket ----

def ws_flow(route, headers=()):
    f = flow(path="/v1/responses", headers=[("upgrade", "websocket"), *headers])
    f.request.method = "GET"
    route.route.request(f)
    f.response = http.Response.make(101, b"", {"upgrade": "websocket"})
    f.websocket = websocket.WebSocketData()
    return f


def ws_send(follow, f, obj, from_client):
    msg = websocket.WebSocketMessage(1, from_client, json.dumps(obj).encode())  # 1: text
    f.websocket.messages.append(msg)
    follow.websocket_message(f)
    return msg
