"""The admin API's HTTP/1.1 server: h11 (a mitmproxy dependency) over asyncio streams, in
mitmproxy's own event loop — no thread, no second process.

It listens only where it is told, hands each request to AdminApi (api.py), and never lets a
bad client disturb the proxy: bounded bodies, an idle timeout, errors answered, not raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import http

import h11

from stickyroute.log import get_logger

from .api import AdminApi, ApiError, Reply

logger = get_logger(__name__)

MAX_BODY = 64 * 1024
IDLE_TIMEOUT = 60.0


class AdminServer:
    def __init__(self) -> None:
        self.api: AdminApi | None = None  # swapped when the token changes
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str | None:
        """The dashboard's address while serving (the real port when asked for port 0)."""
        if self._server is None or not self._server.sockets:
            return None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    async def start(self, host: str, port: int) -> None:
        """Raises OSError when the address cannot be served."""
        self._server = await asyncio.start_server(self._connection, host, port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
        try:
            while await self._exchange(conn, reader, writer):
                conn.start_next_cycle()
        except (ConnectionError, TimeoutError, h11.ProtocolError):
            pass
        except Exception:  # a bad client must never take the proxy down
            logger.exception("admin connection failed")
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _exchange(self, conn: h11.Connection, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> bool:
        """Serve one request; True when the connection can carry another."""
        try:
            event = await _next_event(conn, reader)
            if not isinstance(event, h11.Request):
                return False
            body = bytearray()
            while True:
                part = await _next_event(conn, reader)
                if isinstance(part, h11.Data):
                    body += part.data
                    if len(body) > MAX_BODY:
                        await _send(conn, writer, "POST", ApiError(
                            413, "too_large", f"bodies are limited to {MAX_BODY} bytes").reply())
                        return False
                elif isinstance(part, h11.EndOfMessage):
                    break
                else:
                    return False
        except h11.RemoteProtocolError as e:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await _send(conn, writer, "GET", ApiError(
                    e.error_status_hint, "bad_request", f"bad HTTP request: {e}").reply())
            return False
        method = event.method.decode("ascii", "replace")
        await _send(conn, writer, method, self._dispatch(method, event, bytes(body)))
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    def _dispatch(self, method: str, request: h11.Request, body: bytes) -> Reply:
        if self.api is None:
            return ApiError(503, "unavailable", "the admin API is not configured").reply()
        try:
            target = request.target.decode("ascii")
        except UnicodeDecodeError:
            return ApiError(400, "bad_request", "the request target is not ASCII").reply()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in request.headers}
        try:
            return self.api.handle(method, target, headers, body)
        except Exception:
            logger.exception("admin API failed on %s %s", method, target.partition("?")[0])
            return ApiError(500, "internal", "internal error; see the proxy's log").reply()


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT))


async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, method: str,
                reply: Reply) -> None:
    headers = [("content-type", reply.content_type), ("content-length", str(len(reply.body))),
               ("x-content-type-options", "nosniff"), *reply.headers]
    if reply.status >= 400 and reply.status not in (401, 404, 405):
        headers.append(("connection", "close"))
    response = h11.Response(status_code=reply.status, headers=headers,
                            reason=http.HTTPStatus(reply.status).phrase.encode())
    writer.write(conn.send(response) or b"")
    if method != "HEAD" and reply.body:
        writer.write(conn.send(h11.Data(data=reply.body)) or b"")
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    await writer.drain()
