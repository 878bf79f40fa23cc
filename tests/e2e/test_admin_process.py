"""The admin server as a process concern: where its token comes from, turning it off, a busy
port, and the commands through mitmweb's command bar."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx2
import pytest

from devtools.harness import (
    REDIRECT_ADDON,
    STICKY_ADDON,
    Mitmdump,
    find_free_port,
    redirect_options,
)
from tests.e2e.helpers import ADMIN_TOKEN, ask_openai, start_proxy, write_admin_accounts


def test_generated_token_is_logged_once_with_the_url(
        mitmdump_factory: Any, fake_upstream: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STICKY_ADMIN_TOKEN", raising=False)
    proxy, base = start_proxy(mitmdump_factory, fake_upstream, tmp_path)
    m = proxy.wait_for_output(r"dashboard at (http://\S+)#token=(\S+) ")
    assert m and m.group(1) == base + "/"
    token = m.group(2)
    assert proxy.output().count(token) == 1
    with httpx2.Client(base_url=base, trust_env=False) as c:
        assert c.get("/api/state", headers={"authorization": f"Bearer {token}"}).is_success
        assert c.get("/api/state").status_code == 401


class Mitmweb(Mitmdump):
    """The harness's process wrapper, running mitmweb (its command bar calls /commands/NAME)."""

    def __init__(self, *args: Any, web_port: int, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.web_port = web_port

    def command(self) -> list[str]:
        args = super().command()
        args[0] = str(Path(args[0]).with_name("mitmweb"))
        return args + ["--set", f"web_port={self.web_port}", "--set", "web_open_browser=false",
                       "--set", "web_password=web-pw"]


def test_commands_from_mitmweb_command_bar_and_the_env_token(fake_upstream: Any,
                                                             tmp_path: Path) -> None:
    accounts = write_admin_accounts(fake_upstream, tmp_path)
    web_port, admin_port = find_free_port(), find_free_port()
    admin = f"http://127.0.0.1:{admin_port}/"
    web = Mitmweb([STICKY_ADDON, REDIRECT_ADDON], {
        "sticky_accounts": str(accounts), "sticky_admin": f"127.0.0.1:{admin_port}",
        **redirect_options(fake_upstream)}, env={"STICKY_ADMIN_TOKEN": "from-the-env"},
        confdir=tmp_path / "web", web_port=web_port)
    # The command bar POSTs /commands/NAME {"arguments": [...]}, with mitmweb's xsrf pair.
    xsrf = {"x-xsrftoken": "t0k", "cookie": "_mitmproxy_xsrf=t0k",
            "authorization": "Bearer web-pw"}
    with web, httpx2.Client(base_url=f"http://127.0.0.1:{web_port}", trust_env=False,
                            headers=xsrf, timeout=10) as ui:
        ask_openai(web, "conv-web-1")

        def run(cmd: str, *args: str) -> Any:
            r = ui.post(f"/commands/{cmd}", json={"arguments": list(args)})
            assert r.status_code == 200, r.text
            return r.json()

        listed = ui.get("/commands").json()
        assert {"sticky.sessions", "sticky.accounts", "sticky.evict", "sticky.evict.account",
                "sticky.disable", "sticky.enable", "sticky.admin"} <= set(listed)
        [line] = run("sticky.sessions")["value"]
        assert "/conv-web-1 -> o" in line and "requests=1" in line
        assert run("sticky.accounts")["value"][2].startswith("an anthropic healthy sessions=0")
        assert run("sticky.disable", "ob")["value"].startswith("ob disabled")
        assert "ob openai disabled (disabled by an operator)" in run("sticky.accounts")["value"][1]
        assert run("sticky.enable", "ob")["value"] == "ob enabled"
        assert run("sticky.evict", "conv-web-1")["value"].startswith("evicted openai/")
        assert run("sticky.sessions")["value"] == []
        assert run("sticky.evict", "conv-web-1") == {"error": "no pinned session 'conv-web-1'"}
        assert run("sticky.evict.account", "oa")["value"] == "evicted 0 pin(s) of oa"
        assert run("sticky.admin")["value"][:2] == [
            f"dashboard: {admin} (open with #token=<token>)", "token from: STICKY_ADMIN_TOKEN"]
        assert web.wait_for_output(r"dashboard at http://\S+ \(token from STICKY_ADMIN_TOKEN\)")
        assert "from-the-env" not in web.output()
        with httpx2.Client(base_url=admin, trust_env=False) as c:
            assert c.get("/metrics", headers={"authorization": "Bearer from-the-env"}).is_success
            assert c.get("/metrics", headers={"authorization": "Bearer x"}).status_code == 401


def test_a_busy_admin_port_leaves_the_proxy_running(mitmdump_factory: Any, fake_upstream: Any,
                                                   tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proxy, _ = start_proxy(mitmdump_factory, fake_upstream, tmp_path,
                               sticky_admin=f"127.0.0.1:{port}", sticky_admin_token=ADMIN_TOKEN)
        assert proxy.wait_for_output(rf"cannot serve the admin API on 127.0.0.1:{port}")
        assert ask_openai(proxy, "conv-busy").output
