"""Token refreshes sent through mitmdump reach the fake: the redirect addon covers auth hosts."""

from __future__ import annotations

from devtools.harness import REDIRECT_ADDON, raw_client, redirect_options
from fakeapi import FakeUpstream
from fakeapi.oauth import CLAUDE_CLIENT_ID, CODEX_CLIENT_ID
from tests.e2e.helpers import MitmdumpFactory


def test_token_endpoints_through_the_proxy(fake_upstream: FakeUpstream,
                                           mitmdump_factory: MitmdumpFactory) -> None:
    codex = fake_upstream.oauth.create("chatgpt-x", "chatgpt", login="cx")
    claude = fake_upstream.oauth.create("anthropic-x", "anthropic", login="ax")
    proxy = mitmdump_factory([REDIRECT_ADDON], redirect_options(fake_upstream))
    with raw_client(proxy) as client:
        a = client.post("https://auth.openai.com/oauth/token", json={
            "client_id": CODEX_CLIENT_ID, "grant_type": "refresh_token",
            "refresh_token": codex.refresh_token})
        b = client.post("https://platform.claude.com/v1/oauth/token", json={
            "grant_type": "refresh_token", "refresh_token": claude.refresh_token,
            "client_id": CLAUDE_CLIENT_ID})
    assert a.status_code == 200 and "id_token" in a.json()
    assert b.status_code == 200 and b.json()["refresh_token"] != claude.refresh_token
    hosts = [e["original_host"] for e in fake_upstream.requests(api="oauth_token")]
    assert hosts == ["auth.openai.com", "platform.claude.com"]
    assert fake_upstream.oauth.refreshes("cx") == fake_upstream.oauth.refreshes("ax") == 1
