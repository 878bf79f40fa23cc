"""Commands, token sources, the sticky_admin option and session lookup (no sockets)."""

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from stickyroute.admin import views
from stickyroute.config.settings import parse_address
from tests import test_adminapi

env = test_adminapi.env  # the fixture, shared
pin = test_adminapi.pin


def test_commands(env):
    sticky, admin, _, clock = env
    commands = sticky.commands
    pin(sticky, "conv-1")
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


def test_token_sources(env, monkeypatch):
    sticky, admin, _, _ = env
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


@pytest.mark.parametrize("spec,want", [
    ("127.0.0.1:8091", ("127.0.0.1", 8091)), ("", None), ("  ", None),
    ("localhost:0", ("localhost", 0)), ("[::1]:9000", ("::1", 9000)),
])
def test_parse_address(spec, want):
    assert parse_address(spec) == want


@pytest.mark.parametrize("spec", ["8091", ":8091", "host:", "host:x", "host:70000", "a b:1"])
def test_parse_address_rejects(spec):
    with pytest.raises(ValueError):
        parse_address(spec)


def test_bad_admin_option_is_an_options_error(env):
    sticky, admin, _, _ = env
    with taddons.context(*sticky) as tctx:
        with pytest.raises(exceptions.OptionsError, match="sticky_admin"):
            tctx.configure(sticky.options, sticky_admin="nonsense")


def test_find_sessions_prefers_exact_key(env):
    sticky, _, _, _ = env
    for value in ("abcdefgh", "zzabcdefgh", "xx12345678", "yy12345678"):
        pin(sticky, value)
    key = next(p.session for p in sticky.state.pins if p.session.endswith("/abcdefgh"))
    assert [p.session for p in views.find_sessions(sticky.state, key)] == [key]
    assert [p.session for p in views.find_sessions(sticky.state, "abcdefgh")] == [key]
    assert len(views.find_sessions(sticky.state, "12345678")) == 2  # the short form: both
    assert views.find_sessions(sticky.state, "2345678") == []
    assert views.find_sessions(sticky.state, "gh") == []


def test_server_serves_keeps_alive_and_moves_when_the_option_changes(env):
    import asyncio

    sticky, admin, _, _ = env

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
