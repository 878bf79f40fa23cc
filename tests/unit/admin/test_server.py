"""admin/server.py over a real loopback socket in this process (no second process): one request
per exchange handed to the API, keep-alive, and bad clients answered and cut off, never raised.

The API itself is tested in test_api.py; here a recording stand-in answers.
"""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

import pytest

from stickyroute.admin import server as server_module
from stickyroute.admin.api import Reply, json_reply
from stickyroute.admin.server import AdminServer


class Api:
    """Answers 200 with what it was asked; raises when the target says so."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, str], bytes]] = []

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        self.calls.append((method, target, headers, body))
        if target.startswith("/boom"):
            raise RuntimeError("a bug in a handler")
        if target == "/missing":
            return json_reply(404, {"error": {"code": "not_found", "message": "no"}})
        return json_reply(200, {"method": method, "target": target, "size": len(body)})


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def ask(self, raw: bytes, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        self.writer.write(raw)
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines if line)
        length = 0 if head_only else int(headers["content-length"])
        return int(status_line.split()[1]), headers, await self.reader.readexactly(length)

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 5) == b""


def serving(scenario: Callable[[AdminServer, Api, Callable[[], Awaitable[Conn]]],
                               Awaitable[None]], api: Api | None = None) -> None:
    async def run() -> None:
        server = AdminServer()
        server.api = api
        assert server.url is None
        await server.start("127.0.0.1", 0)
        host, port = server.url[len("http://"):-1].rsplit(":", 1)

        async def connect() -> Conn:
            return Conn(*await asyncio.open_connection(host, int(port)))

        try:
            await scenario(server, api, connect)
        finally:
            await server.stop()
        assert server.url is None
    asyncio.run(run())


def get(target: str, extra: str = "") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def test_requests_reach_the_api_and_the_connection_is_kept_alive():
    async def scenario(server, api, connect):
        conn = await connect()
        status, headers, body = await conn.ask(get("/api/state?x=1", "Authorization: Bearer t\r\n"))
        assert status == 200 and json.loads(body)["target"] == "/api/state?x=1"
        assert headers["x-content-type-options"] == "nosniff"
        status, headers, body = await conn.ask(
            b"POST /api/accounts/oa/disable HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        assert status == 200 and json.loads(body) == {
            "method": "POST", "target": "/api/accounts/oa/disable", "size": 5}
        status, headers, body = await conn.ask(
            b"HEAD /api/state HTTP/1.1\r\nHost: x\r\n\r\n", head_only=True)
        assert status == 200 and int(headers["content-length"]) > 0  # the length, no body
        status, _, _ = await conn.ask(get("/missing"))  # a 404 keeps the connection too
        assert status == 404
        status, _, _ = await conn.ask(get("/api/state"))
        assert status == 200
        assert [c[0] for c in api.calls] == ["GET", "POST", "HEAD", "GET", "GET"]
        assert api.calls[0][2]["authorization"] == "Bearer t"  # header names lowercased
    serving(scenario, Api())


def test_a_body_over_the_limit_is_413_and_the_connection_ends(monkeypatch):
    monkeypatch.setattr(server_module, "MAX_BODY", 100)

    async def scenario(server, api, connect):
        conn = await connect()
        status, headers, body = await conn.ask(
            b"POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n" + b"x" * 500)
        assert status == 413 and json.loads(body)["error"]["code"] == "too_large"
        assert headers["connection"] == "close" and await conn.closed()
        assert api.calls == []
    serving(scenario, Api())


@pytest.mark.parametrize("raw", [b"NONSENSE\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n",  # no Host
                                 b"GET /x HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"])
def test_a_bad_request_is_400_and_the_connection_ends(raw):
    async def scenario(server, api, connect):
        conn = await connect()
        status, headers, body = await conn.ask(raw)
        assert status == 400 and json.loads(body)["error"]["code"] == "bad_request"
        assert await conn.closed() and api.calls == []
    serving(scenario, Api())


def test_a_target_that_is_not_ascii_is_400():
    async def scenario(server, api, connect):
        status, _, body = await (await connect()).ask(b"GET /api/\xff HTTP/1.1\r\nHost: x\r\n\r\n")
        # (h11 refuses it already: _dispatch's own ASCII check is a second line)
        assert status == 400 and json.loads(body)["error"]["code"] == "bad_request"
        assert api.calls == []
    serving(scenario, Api())


def test_no_api_yet_is_503():
    async def scenario(server, api, connect):
        status, _, body = await (await connect()).ask(get("/api/state"))
        assert status == 503 and json.loads(body)["error"]["code"] == "unavailable"
    serving(scenario, None)


def test_a_failing_handler_is_500_logged_without_its_query(caplog):
    async def scenario(server, api, connect):
        conn = await connect()
        with caplog.at_level(logging.ERROR, "stickyroute"):
            status, headers, body = await conn.ask(get("/boom?token=secret-in-query"))
        assert status == 500 and json.loads(body)["error"]["code"] == "internal"
        assert headers["connection"] == "close"
        (record,) = caplog.records
        assert "/boom" in record.getMessage() and "secret-in-query" not in record.getMessage()
        status, _, _ = await (await connect()).ask(get("/api/state"))  # still serving
        assert status == 200
    serving(scenario, Api())


def test_stop_closes_open_connections():
    async def scenario(server, api, connect):
        conn = await connect()
        assert (await conn.ask(get("/api/state")))[0] == 200  # an idle keep-alive connection
        await server.stop()
        assert await conn.closed()
    serving(scenario, Api())


def test_the_url_names_the_real_port_and_brackets_ipv6():
    async def run() -> None:
        server = AdminServer()
        try:
            await server.start("::1", 0)
        except OSError:
            pytest.skip("no IPv6 loopback here")
        try:
            assert server.url.startswith("http://[::1]:") and server.url.endswith("/")
            assert not server.url.endswith(":0/")
        finally:
            await server.stop()
    asyncio.run(run())
