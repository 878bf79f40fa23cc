"""The README's ways to start the proxy: `just run`, `just web`, and mitmdump by hand.

Each is started as the README gives it, with what a test needs: the test accounts file (named by
STICKY_ACCOUNTS for the recipes, in place of `accounts.yaml` by hand), a free port, and at the
end of the command line a throwaway confdir, no admin API and the redirect addon pointing at
the fake upstream. Then one request through it must reach the fake signed with an account's
key.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx2

from devtools.harness import (
    OPENAI_KEYS,
    REDIRECT_ADDON,
    Mitmdump,
    find_free_port,
    mitmdump_executable,
    proxy_ssl_context,
    write_accounts,
)
from fakeapi import FakeUpstream


class Command(Mitmdump):
    """The harness's process wrapper around a command line of our own; stopped as a group
    (`just` runs mitmproxy as its child)."""

    def __init__(self, argv: list[str], tmp: Path, fake: FakeUpstream, **kw: Any) -> None:
        super().__init__(confdir=tmp / "confdir", **kw)
        self.argv = argv + [
            "--set", f"confdir={self.confdir}", "--set", "sticky_admin=",
            "--set", "connection_strategy=lazy",
            "-s", str(REDIRECT_ADDON), "--set", f"fake_upstream=127.0.0.1:{fake.port}"]

    def command(self) -> list[str]:
        return self.argv

    def stop(self, timeout: float = 10.0) -> str:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return super().stop(timeout)


def routed(proxy: Mitmdump, fake: FakeUpstream) -> None:
    with httpx2.Client(proxy=proxy.proxy_url, verify=proxy_ssl_context(proxy),
                       trust_env=False, timeout=30) as client:
        r = client.post("https://api.openai.com/v1/responses",
                        headers={"authorization": "Bearer any-key", "session-id": "recipe-1"},
                        json={"model": "gpt-5", "input": "Say hi."})
    assert r.status_code == 200, r.text
    (entry,) = fake.requests()
    assert entry["credential"] in OPENAI_KEYS, entry
    assert proxy.wait_for_output(r"stickyroute: responses -> openai-\w \| session recipe-1")


def recipe_env(tmp: Path, port: int) -> dict[str, str]:
    return {"STICKY_PORT": str(port), "STICKY_ACCOUNTS": str(write_accounts(tmp / "a.yaml"))}


def test_just_run(tmp_path: Path, fake_upstream: FakeUpstream) -> None:
    port = find_free_port()
    with Command(["just", "run"], tmp_path, fake_upstream, port=port,
                 env=recipe_env(tmp_path, port)) as proxy:
        routed(proxy, fake_upstream)


def test_just_web(tmp_path: Path, fake_upstream: FakeUpstream) -> None:
    port, web = find_free_port(), find_free_port()
    argv = ["just", "web", "--set", f"web_port={web}", "--set", "web_open_browser=false"]
    with Command(argv, tmp_path, fake_upstream, port=port,
                 env=recipe_env(tmp_path, port)) as proxy:
        routed(proxy, fake_upstream)
        assert f"127.0.0.1:{web}" in proxy.output()  # mitmweb's UI


def test_mitmdump_by_hand(tmp_path: Path, fake_upstream: FakeUpstream) -> None:
    port = find_free_port()
    accounts = write_accounts(tmp_path / "accounts.yaml")
    argv = [mitmdump_executable(), "-s", "addon/sticky.py", "--listen-host", "127.0.0.1",
            "--set", f"sticky_accounts={accounts}", "--set", "sticky_strategy=round-robin",
            "-p", str(port)]
    with Command(argv, tmp_path, fake_upstream, port=port) as proxy:
        routed(proxy, fake_upstream)
