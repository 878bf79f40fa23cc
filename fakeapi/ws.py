"""The Responses API over WebSocket (Codex's transport): GET /v1/responses with Upgrade.

Each client text frame `{"type": "response.create", ...request fields}` is one turn: it is
answered by the same events the SSE stream carries, one JSON frame each, and logged like an
HTTP request (api "responses", ws: True). Credentials come from the handshake's headers. A turn
can chain from any earlier response of its connection, even one made with `store: false`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from io import BufferedIOBase
from typing import Any, Protocol

from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from . import openai_api
from .accounts import StoredResponse
from .log import new_entry, note_body
from .oauth import Check
from .wire import Reply, unauthorized


class Authority(Protocol):
    def authenticate(self, family: str, headers: Mapping[str, str]) -> tuple[str | None, str]: ...
    def check_oauth(self, family: str, headers: Mapping[str, str]) -> Check | None: ...
    def record(self, entry: dict[str, Any]) -> None: ...


class Exchange(Protocol):
    """The HTTP exchange a WebSocket was upgraded from (handler.FakeHandler)."""

    path: str
    rfile: Any  # a buffered reader (read1)
    wfile: BufferedIOBase
    close_connection: bool

    @property
    def upstream(self) -> Authority: ...
    def send_response(self, code: int, message: str | None = None) -> None: ...
    def send_header(self, keyword: str, value: str) -> None: ...
    def end_headers(self) -> None: ...
    def _send(self, reply: Reply, entry: dict[str, Any] | None) -> None: ...
    def _call(self, endpoint: Callable[..., Reply], family: str, body: dict[str, Any],
              headers: dict[str, str], account: str, metered: bool = True,
              websocket: bool = False) -> Reply: ...

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def serve_websocket(handler: Exchange, family: str, headers: dict[str, str],
                    entry: dict[str, Any]) -> None:
    account, credential = handler.upstream.authenticate(family, headers)
    login = handler.upstream.check_oauth(family, headers)
    if login is not None:  # a subscription login's access token, checked at the handshake
        account = login.account
    entry.update(api="responses", ws=True, account=account, credential=credential)
    if account is None:
        handler._send(login.refusal if login is not None and login.refusal is not None else
                      unauthorized(family, "WebSocket handshake without a known credential"),
                      entry)
        return
    key = headers.get("sec-websocket-key", "").encode()
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
    handler.send_response(101)
    handler.send_header("upgrade", "websocket")
    handler.send_header("connection", "Upgrade")
    handler.send_header("sec-websocket-accept", accept)
    handler.end_headers()
    handler.wfile.flush()
    handler.close_connection = True
    ws = Connection(ConnectionType.SERVER)
    text = ""
    responses: dict[str, StoredResponse] = {}  # chainable on this connection, store or not
    while True:
        data = handler.rfile.read1(65536)
        ws.receive_data(data or None)
        for event in ws.events():
            if isinstance(event, Ping):
                handler.wfile.write(ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                handler.wfile.write(ws.send(event.response()))
                handler.wfile.flush()
                return
            elif isinstance(event, TextMessage):
                text += event.data
                if event.message_finished:
                    for frame in _turn(handler, family, headers, account, text, responses):
                        handler.wfile.write(ws.send(TextMessage(frame)))
                    text = ""
            elif isinstance(event, BytesMessage):
                pass
        handler.wfile.flush()
        if not data:
            return


def _turn(handler: Exchange, family: str, headers: dict[str, str], account: str,
          text: str, responses: dict[str, StoredResponse]) -> list[str]:
    try:
        frame = json.loads(text)
    except ValueError:
        frame = None
    if not isinstance(frame, dict) or frame.get("type") != "response.create":
        return [json.dumps({"type": "error", "error": {"message": "expected response.create"}})]
    body = dict(frame["response"]) if isinstance(frame.get("response"), dict) else {
        k: v for k, v in frame.items() if k != "type"}
    body["stream"] = True
    entry = new_entry("WS", handler.path, headers)
    entry.update(api="responses", ws=True, account=account,
                 credential=handler.upstream.authenticate(family, headers)[1])
    note_body(entry, body)
    endpoint = functools.partial(openai_api.responses, connection=responses)
    reply = handler._call(endpoint, family, body, headers, account, websocket=True)
    entry.update(status=reply.status, response_id=reply.response_id, usage=reply.usage,
                 error_code=reply.error_code, completed=True)
    handler.upstream.record(entry)
    if reply.events is None:
        return [json.dumps({"type": "error", "status": reply.status, **(reply.body or {})})]
    return [_data(frame) for frame in reply.events]


def _data(sse_frame: bytes) -> str:
    for line in sse_frame.decode().splitlines():
        if line.startswith("data: "):
            return line[6:]
    return "{}"
