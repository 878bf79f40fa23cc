"""addons/admin.py: the admin addon's commands, token sources, page, and its server's life
(started, moved and stopped with the `sticky_admin` option)."""

import asyncio

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from tests.helpers import route_session


def test_the_real_dashboard_file_is_self_contained(admin_env):
    _, admin, _, _ = admin_env
    page = admin.page().decode()
    assert "<script>" in page and "Authorization" in page
    assert "http://" not in page and "https://" not in page  # no CDN, nothing from elsewhere


def test_commands(admin_env):
    sticky, admin, _, clock = admin_env
    commands = sticky.commands
    route_session(sticky, "conv-1")
    clock.t += 3
    [line] = commands.sessions_command()
    assert line.endswith("requests=1 idle=3s") and "conv-1 -> o" in line
    admin.disable_command("oa")
    lines = commands.accounts_command()
    assert "oa openai disabled (disabled by an operator) sessions=" in lines[0]
    assert lines[3].startswith("cg chatgpt disabled (enabled: false in the accounts file)")
    admin.enable_command("oa")
    assert commands.accounts_command()[0].startswith("oa openai healthy")
    commands.evict_command("conv-1")
    assert len(sticky.state.pins) == 0
    with pytest.raises(exceptions.CommandError):
        admin.disable_command("nope")
    assert admin.admin_command() == ["the admin API is off (set sticky_admin=HOST:PORT)"]


def test_token_sources(admin_env, monkeypatch):
    sticky, admin, _, _ = admin_env
    assert admin.token_source == "sticky_admin_token"
    with taddons.context(*sticky) as tctx:
        monkeypatch.setenv("STICKY_ADMIN_TOKEN", "from-env")
        tctx.configure(admin, sticky_admin_token="")
        assert admin.token_source == "STICKY_ADMIN_TOKEN"
        assert admin.api.authorized({"authorization": "Bearer from-env"})
        monkeypatch.delenv("STICKY_ADMIN_TOKEN")
        tctx.configure(admin, sticky_admin_token="x", sticky_admin="127.0.0.1:1")
        tctx.configure(admin, sticky_admin_token="")
        first = admin._generated
        assert admin.token_source == "generated" and first and len(first) >= 24
        tctx.configure(admin, sticky_admin="127.0.0.1:2")
        assert admin._generated == first  # generated once per process


def test_server_serves_keeps_alive_and_moves_when_the_option_changes(admin_env):
    sticky, admin, _, _ = admin_env

    async def get_twice(url: str) -> list[bytes]:
        host, port = url[7:-1].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        answers = []
        for method in ("GET", "HEAD"):
            writer.write(f"{method} /api/state HTTP/1.1\r\nHost: x\r\n"
                         f"Authorization: Bearer admin-token-123\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            answers.append(head + (await reader.readexactly(length) if method == "GET" else b""))
        writer.close()
        return answers

    async def scenario() -> None:
        with taddons.context(*sticky) as tctx:
            tctx.configure(sticky.options, sticky_admin="127.0.0.1:0",
                           sticky_admin_token="admin-token-123")
            await admin.running()
            first = admin.url
            assert first and first.startswith("http://127.0.0.1:")
            got, head = await get_twice(first)
            assert got.startswith(b"HTTP/1.1 200") and b'"sessions"' in got
            assert head.startswith(b"HTTP/1.1 200")  # same connection: kept alive
            tctx.configure(sticky.options, sticky_admin="")
            await admin._restart
            assert admin.url is None
            tctx.configure(sticky.options, sticky_admin="127.0.0.1:0")
            await admin._restart
            assert admin.url is not None
            await admin.done()
            assert admin.url is None

    asyncio.run(scenario())


def test_enable_command_cannot_undo_the_files_enabled_false(admin_env):
    sticky, admin, _, _ = admin_env
    with pytest.raises(exceptions.CommandError, match="only the file can enable it"):
        admin.enable_command("cg")
    assert not sticky.state.health.available("cg", sticky.state.clock())
