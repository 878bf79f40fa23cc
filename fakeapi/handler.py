"""HTTP side of the fake: read a request, route it, apply faults, write JSON or SSE.

Every request, rejected or not, ends up as one log entry with the raw credential it
carried, so tests can prove what the proxy did and did not forward.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import urlsplit

from . import anthropic_api, openai_api, startup
from .accounts import AccountState
from .bodies import decode, json_or_none
from .faults import ERROR_KINDS, Fault, FaultTable
from .log import new_entry, note_body
from .oauth import TOKEN_PATHS
from .wire import Call, Reply, anthropic_error, fault_reply, openai_error, unauthorized
from .ws import serve_websocket


class Upstream(Protocol):
    """What the handler asks of the FakeUpstream that owns all state (behind `lock`)."""

    lock: AbstractContextManager[Any]
    faults: FaultTable

    def account(self, name: str) -> AccountState: ...
    def authenticate(self, family: str, headers: Mapping[str, str]) -> tuple[str | None, str]: ...
    def record(self, entry: dict[str, Any]) -> None: ...
    def track(self, conn: Any, alive: bool) -> None: ...
    def stall_event(self) -> threading.Event: ...
    # the control endpoints (/_fake/...) other processes use
    def requests(self, **match: Any) -> list[dict[str, Any]]: ...
    def reset(self) -> None: ...
    def reset_log(self) -> None: ...
    def release_stalls(self) -> None: ...
    def add_fault(self, account: str | None = None, kind: str = "429", count: int = 1,
                  retry_after: float | None = None, delay: float = 0.0,
                  path: str | None = None) -> Fault: ...
    def clear_faults(self) -> None: ...


logger = logging.getLogger(__name__)

# (method, path) -> (api name for the log, provider family, handler)
ROUTES: dict[tuple[str, str], tuple[str, str, Any]] = {
    ("POST", "/v1/responses"): ("responses", "openai", openai_api.responses),
    ("POST", "/backend-api/codex/responses"): ("responses", "chatgpt", openai_api.responses),
    ("POST", "/v1/chat/completions"): ("chat", "openai", openai_api.chat),
    ("POST", "/v1/messages"): ("messages", "anthropic", anthropic_api.messages),
    ("POST", "/v1/messages/count_tokens"):
        ("other", "anthropic", anthropic_api.count_tokens_api),
}
DEFAULT_OUTPUT_TOKENS = 20
MAX_STALL = 60.0  # a stall without a delay waits for release_stalls(), but not forever


class FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 300
    server_version = "fakeapi/1"
    # Headers, body and every SSE frame are separate small writes: without this, Nagle plus
    # delayed ACKs add ~40 ms per request and make streams arrive in lumps.
    disable_nagle_algorithm = True

    @property
    def upstream(self) -> Upstream:
        return self.server.upstream  # type: ignore[attr-defined,no-any-return]

    def setup(self) -> None:
        super().setup()
        self.upstream.track(self.connection, True)

    def finish(self) -> None:
        self.upstream.track(self.connection, False)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s " + format, self.client_address[0], *args)

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    # ---- one request ----

    def _handle(self) -> None:
        self._stall = None  # the handler object lives as long as the keep-alive connection
        split = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        entry = new_entry(self.command, self.path, headers)
        try:
            raw = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        entry["body_size"] = len(raw)
        if split.path.startswith("/_fake/"):
            self._send(self._control(split.path, split.query, raw), entry=None)
            return
        if self.command == "POST" and split.path in TOKEN_PATHS:
            reply = self._token(split.path, raw, entry)
            if reply is not None:
                self._send(reply, entry)
            return
        if headers.get("upgrade", "").lower() == "websocket" and ("POST", split.path) in ROUTES:
            serve_websocket(self, ROUTES["POST", split.path][1], headers, entry)
            return
        reply = self._answer(split.path, headers, raw, entry)
        if reply is not None:
            self._send(reply, entry)

    def _answer(self, path: str, headers: dict[str, str], raw: bytes,
                entry: dict[str, Any]) -> Reply | None:
        route = ROUTES.get((self.command, path))
        api, family, endpoint = route if route else ("other", _family_of(path, headers), None)
        entry["api"] = api
        try:
            data = decode(raw, headers.get("content-encoding", ""))
        except ValueError as exc:
            return _bad_request(family, f"Could not decode request body: {exc}")
        body = json_or_none(data)
        entry["body_sha256"] = hashlib.sha256(data).hexdigest()  # proves a body was untouched
        note_body(entry, body)

        known = route is not None or path.startswith("/v1/models")
        account, credential = self.upstream.authenticate(family if known else "other", headers)
        oauth = self.upstream.check_oauth(family, headers) if known else None
        if oauth is not None:  # a subscription login's access token
            account = oauth.account
        entry.update(account=account, credential=credential)
        if known and account is None:
            if oauth is not None and oauth.refusal is not None:
                return oauth.refusal
            return unauthorized(family, _auth_detail(family, credential))
        with self.upstream.lock:
            fault = self.upstream.faults.take(account, path, api=known)
        if fault is not None:
            entry["fault"] = fault.kind
            outcome = self._apply_fault(fault, family, entry)
            if outcome is not None or fault.kind == "drop":
                return outcome
        if endpoint is None:
            extra = startup.reply(self.command, self.path, headers,
                                  self.upstream.chatgpt_accounts, self.upstream.check_oauth)
            if extra is not None:
                return extra
            return _models() if known else _echo(self.path, headers)
        if not isinstance(body, dict):
            return _bad_request(family, "Request body must be a JSON object.")
        return self._call(endpoint, family, body, headers, account or "", metered=api != "other")

    def _call(self, endpoint: Any, family: str, body: dict[str, Any], headers: dict[str, str],
              account: str, metered: bool = True, websocket: bool = False) -> Reply:
        call = Call(body, family, _output_tokens(headers), stream=body.get("stream") is True)
        with self.upstream.lock:
            usage = self.upstream.usage
            refused = usage.refuse(account, family) if metered else None
            if refused is not None:
                return refused
            reply: Reply = endpoint(call, self.upstream.account(account))
            if metered:
                usage.charge(account, family, reply, websocket)
            return reply

    def _token(self, path: str, raw: bytes, entry: dict[str, Any]) -> Reply | None:
        """A token endpoint (refresh); faults that name its path apply, as for any path."""
        family = TOKEN_PATHS[path]
        entry.update(api="oauth_token", family=family)
        body = json_or_none(raw)
        note_body(entry, body)
        if isinstance(body, dict) and isinstance(body.get("refresh_token"), str):
            entry["credential"] = body["refresh_token"]
        with self.upstream.lock:
            fault = self.upstream.faults.take(None, path, api=False)
        if fault is not None:
            entry["fault"] = fault.kind
            outcome = self._apply_fault(fault, family, entry)
            if outcome is not None or fault.kind == "drop":
                return outcome
        with self.upstream.lock:
            reply, login = self.upstream.oauth.token_endpoint(family, body)
        entry["account"] = login
        return reply

    def _apply_fault(self, fault: Fault, family: str, entry: dict[str, Any]) -> Reply | None:
        """An error reply, None to go on normally, or None after dropping the connection."""
        if fault.kind in ERROR_KINDS:
            return fault_reply(fault.kind, family, fault.retry_after)
        if fault.kind == "drop":
            entry["status"] = None
            self.upstream.record(entry)
            self.close_connection = True
            _hard_close(self.connection)
            return None
        if fault.kind == "slow":
            time.sleep(fault.delay)
        if fault.kind == "stall":
            self._stall = (fault, self.upstream.stall_event())
        return None

    def _control(self, path: str, query: str, raw: bytes) -> Reply:
        up = self.upstream
        if path == "/_fake/log" and self.command == "GET":
            return Reply(200, up.requests())
        if path == "/_fake/reset" and self.command == "POST":
            up.reset() if "all=1" in query else up.reset_log()
        elif path == "/_fake/release" and self.command == "POST":
            up.release_stalls()
        elif path == "/_fake/faults" and self.command == "POST":
            try:
                up.add_fault(**json.loads(raw or b"{}"))
            except (ValueError, TypeError) as exc:
                return Reply(400, {"error": str(exc)})
        elif path == "/_fake/usage" and self.command == "POST":
            try:
                return Reply(200, up.set_usage(**json.loads(raw or b"{}")).as_dict())
            except (ValueError, TypeError) as exc:
                return Reply(400, {"error": str(exc)})
        elif path == "/_fake/faults" and self.command == "DELETE":
            up.clear_faults()
        else:
            return Reply(404, {"error": f"no control endpoint {self.command} {path}"})
        return Reply(200, {"ok": True})

    # ---- I/O ----

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()

    def _send(self, reply: Reply, entry: dict[str, Any] | None) -> None:
        if entry is not None:
            entry.update(status=reply.status, response_id=reply.response_id,
                         usage=reply.usage, error_code=reply.error_code)
            self.upstream.record(entry)
        try:
            if reply.events is not None:
                self._send_stream(reply)
            else:
                self._wait_out_stall()  # a stalled non-streamed answer is just late
                self._send_json(reply)
            if entry is not None:
                entry["completed"] = True
        except OSError:  # the client went away mid-answer
            self.close_connection = True

    def _send_json(self, reply: Reply) -> None:
        data = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        for name, value in {"content-type": "application/json", **reply.headers}.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_stream(self, reply: Reply) -> None:
        self.send_response(reply.status)
        headers = {"content-type": "text/event-stream; charset=utf-8",
                   "cache-control": "no-cache", **reply.headers, "transfer-encoding": "chunked"}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        pause = _chunk_delay(self.headers.get("x-fake-chunk-delay"))
        for i, frame in enumerate(reply.events or []):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            self.wfile.flush()
            if i == 0:
                self._wait_out_stall()
            if pause:
                time.sleep(pause)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _wait_out_stall(self) -> None:
        """Pause for the stall fault's delay, or until release_stalls() when it has none."""
        if self._stall is not None:
            fault, release = self._stall
            self._stall = None
            release.wait(fault.delay if fault.delay > 0 else MAX_STALL)

    _stall: tuple[Fault, threading.Event] | None = None


# ---- helpers ----


def _family_of(path: str, headers: dict[str, str]) -> str:
    if path.startswith("/backend-api/"):
        return "chatgpt"
    return "anthropic" if "x-api-key" in headers or "anthropic-version" in headers else "openai"


def _auth_detail(family: str, credential: str) -> str:
    if family == "anthropic":
        return "invalid x-api-key"
    if family == "chatgpt":
        return "Unauthorized: unknown token or ChatGPT-Account-ID mismatch."
    shown = credential[:3] + "*" * 4 + credential[-4:] if credential else "(none)"
    return f"Incorrect API key provided: {shown}."


def _bad_request(family: str, message: str) -> Reply:
    if family == "anthropic":
        return anthropic_error(400, "invalid_request_error", message)
    return openai_error(400, message, "invalid_request_error", None)


def _models() -> Reply:
    models = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"}
              for m in ("gpt-fake", "gpt-5-codex", "claude-fake")]
    return Reply(200, {"object": "list", "data": models})


def _echo(path: str, headers: dict[str, str]) -> Reply:
    return Reply(200, {"path": path, "headers": headers})


def _output_tokens(headers: dict[str, str]) -> int:
    try:
        return max(1, min(int(headers.get("x-fake-output-tokens", "")), 200_000))
    except ValueError:
        return DEFAULT_OUTPUT_TOKENS


def _chunk_delay(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


def _hard_close(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass

