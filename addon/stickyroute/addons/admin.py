"""Glue: serves the admin API, metrics and dashboard (adminapi.py) on `sticky_admin`.

A minimal HTTP/1.1 server over h11 (a mitmproxy dependency) in mitmproxy's own event loop: no
thread, no second process. It listens only where sticky_admin says, answers nothing without
the bearer token but the static page, and never lets a bad client disturb the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h11
from mitmproxy import command, exceptions

from stickyroute.admin import metrics, views
from stickyroute.admin.api import AdminApi, ApiError, Reply

logger = logging.getLogger("stickyroute")

PAGE = Path(__file__).parent.parent / "admin" / "dashboard.html"
TOKEN_ENV = "STICKY_ADMIN_TOKEN"
MAX_BODY = 64 * 1024
IDLE_TIMEOUT = 60.0


class StickyAdmin:
    def __init__(self, sticky: Any) -> None:
        self.sticky = sticky
        self.api: AdminApi | None = None
        self.token_source = ""
        self._generated: str | None = None
        self._registry = metrics.registry_for(sticky)
        self._page: bytes | None = None
        self._server: asyncio.Server | None = None
        self._address: tuple[str, int] | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._running = False
        self._announced = False
        self._restart: asyncio.Task[None] | None = None

    @property
    def url(self) -> str | None:
        """The dashboard's address while serving (the real port when sticky_admin said 0)."""
        if self._server is None or not self._server.sockets:
            return None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    # ---- options and lifecycle ---------------------------------------------------------
    def configure(self, updated: set[str]) -> None:
        if not {"sticky_admin", "sticky_admin_token"} & updated:
            return
        settings = self.sticky.settings
        token, self.token_source = settings.admin_token, "sticky_admin_token"
        if not token:
            token, self.token_source = os.environ.get(TOKEN_ENV, "").strip(), TOKEN_ENV
        if not token:
            self._generated = self._generated or secrets.token_urlsafe(24)
            token, self.token_source = self._generated, "generated"
        self.api = AdminApi(self.sticky, token, self.page, self.metrics)
        if self._running and settings.admin != self._address:
            self._restart = asyncio.ensure_future(self._serve_again())

    async def running(self) -> None:
        self._running = True
        await self._start()

    async def done(self) -> None:
        self._running = False
        await self._stop()

    async def _serve_again(self) -> None:
        await self._stop()
        await self._start()

    async def _start(self) -> None:
        address = self.sticky.settings.admin
        self._address = address
        if address is None:
            return
        host, port = address
        try:
            self._server = await asyncio.start_server(self._connection, host, port)
        except OSError as e:
            # A warning, not an error: the proxy's real job goes on without its admin API
            # (mitmdump exits on errors logged at start, e.g. a second proxy on this machine).
            logger.warning("stickyroute: cannot serve the admin API on %s:%d: %s; the proxy "
                           "runs without it (set sticky_admin to another HOST:PORT, or empty)",
                           host, port, e.strerror or e)
            return
        if self.token_source == "generated" and not self._announced:
            logger.warning("stickyroute: admin API and dashboard at %s#token=%s (a generated "
                           "token; set sticky_admin_token or %s to choose one)", self.url,
                           self._generated, TOKEN_ENV)
        else:
            logger.info("stickyroute: admin API and dashboard at %s (token from %s)", self.url,
                        self.token_source)
        self._announced = True

    async def _stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)

    def page(self) -> bytes:
        if self._page is None:
            self._page = PAGE.read_bytes()
        return self._page

    def metrics(self) -> tuple[bytes, str]:
        return metrics.render(self._registry)

    # ---- HTTP/1.1 over h11 -------------------------------------------------------------
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
            logger.exception("stickyroute: admin connection failed")
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
            logger.exception("stickyroute: admin API failed on %s %s", method,
                             target.partition("?")[0])
            return ApiError(500, "internal", "internal error; see the proxy's log").reply()

    # ---- commands ----------------------------------------------------------------------
    @command.command("sticky.disable")
    def disable_command(self, alias: str) -> str:
        """Take an account out of rotation: no new traffic until sticky.enable."""
        account = self._account(alias)
        self.sticky.health.disable(account.alias, views.DISABLED_BY_OPERATOR, self.sticky.clock())
        logger.info("stickyroute: account %s disabled by an operator", alias)
        return f"{alias} disabled: no new traffic until sticky.enable {alias}"

    @command.command("sticky.enable")
    def enable_command(self, alias: str) -> str:
        """Put an account back into rotation."""
        account = self._account(alias)
        self.sticky.health.enable(account.alias, self.sticky.clock())
        logger.info("stickyroute: account %s enabled by an operator", alias)
        return f"{alias} enabled"

    @command.command("sticky.admin")
    def admin_command(self) -> Sequence[str]:
        """Where the admin API and dashboard are served, and where their token comes from."""
        url = self.url
        if url is None:
            return ["the admin API is off (set sticky_admin=HOST:PORT)"]
        return [f"dashboard: {url} (open with #token=<token>)",
                f"token from: {self.token_source}",
                f"metrics: curl -H 'Authorization: Bearer <token>' {url}metrics"]

    def _account(self, alias: str) -> Any:
        account = self.sticky.accounts.get(alias)
        if account is None:
            raise exceptions.CommandError(f"no account {alias!r}")
        return account


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
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
