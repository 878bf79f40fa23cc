"""Issue 8, must show: after an e2e run, no byte the proxy wrote holds an account credential.

Real mitmdump (flow_detail=3 prints request headers, `save_stream_file` writes every flow),
SDK clients for OpenAI and Anthropic, a raw ChatGPT-backend call, a non-account host, an
unknown-client refusal; then stdout and the flow file are searched for every configured secret.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx2
import pytest
from mitmproxy import io as mitmio

from devtools.harness import (
    ANTHROPIC_KEYS,
    CHATGPT_ACCOUNTS,
    OPENAI_KEYS,
    REDIRECT_ADDON,
    STICKY_ADDON,
    anthropic_client,
    find_free_port,
    openai_client,
    raw_client,
    redirect_options,
)
from fakeapi import FakeUpstream
from fakeapi.oauth import write_login_file
from tests.e2e.helpers import MitmdumpFactory

CLIENT_TOKEN = "client-token-alice"
SECRETS = [*OPENAI_KEYS, *ANTHROPIC_KEYS, *CHATGPT_ACCOUNTS,
           *(account_id for _, account_id in CHATGPT_ACCOUNTS.values()), "proj-very-secret"]


def write_accounts(path: Path, gate: bool, fake: FakeUpstream) -> Path:
    lines = ["accounts:"]
    # subscription logins too (issue 13): their tokens are secrets like the keys
    for alias, family, token_path in (("sub-codex", "chatgpt", "/oauth/token"),
                                      ("sub-claude", "anthropic", "/v1/oauth/token")):
        write_login_file(path.parent / f"{alias}.json",
                         fake.oauth.create(alias, family, login=alias))
        lines += [f"  - alias: {alias}", f"    provider: {family}",
                  f"    oauth_file: {alias}.json", f"    token_url: {fake.url}{token_path}"]
    for key, name in OPENAI_KEYS.items():
        lines += [f"  - alias: {name}", "    provider: openai", f"    api_key: {key}",
                  "    headers: {OpenAI-Project: proj-very-secret}"]
    for key, name in ANTHROPIC_KEYS.items():
        lines += [f"  - alias: {name}", "    provider: anthropic", f"    api_key: {key}"]
    for token, (name, account_id) in CHATGPT_ACCOUNTS.items():
        lines += [f"  - alias: {name}", "    provider: chatgpt", f"    api_key: {token}",
                  f"    account_id: {account_id}"]
    if gate:
        digest = hashlib.sha256(CLIENT_TOKEN.encode()).hexdigest()
        lines += ["clients:", "  - name: alice", f"    token_hash: sha256:{digest}",
                  "    accounts: ['*']"]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def assert_no_secret(where: str, data: bytes, secrets: list[str] = SECRETS) -> None:
    found = [s for s in secrets if s.encode() in data]
    assert not found, f"{where} holds {len(found)} credential(s)"


@pytest.mark.parametrize("gate", [False, True], ids=["open", "gated"])
def test_no_byte_the_proxy_wrote_holds_a_credential(
        fake_upstream: FakeUpstream, mitmdump_factory: MitmdumpFactory, tmp_path: Path,
        gate: bool) -> None:
    flows_file = tmp_path / "flows.mitm"
    accounts = write_accounts(tmp_path / "accounts.yaml", gate, fake_upstream)
    admin_port = find_free_port()
    proxy = mitmdump_factory(
        [STICKY_ADDON, REDIRECT_ADDON],
        {"sticky_accounts": str(accounts), "save_stream_file": str(flows_file),
         "flow_detail": 3, "sticky_admin": f"127.0.0.1:{admin_port}",
         "sticky_admin_token": "admin-token-secrets", **redirect_options(fake_upstream)})
    token = CLIENT_TOKEN if gate else "sk-client-placeholder"
    oa = openai_client(proxy, api_key=token)
    for i in range(3):
        oa.responses.create(model="gpt-5", input=f"secret scan {i}",
                            extra_headers={"session_id": f"scan-{i}"})
    with oa.responses.stream(model="gpt-5", input="streamed") as s:
        s.get_final_response()
    an = anthropic_client(proxy, api_key=token)
    an.messages.create(model="claude-sonnet-4-5", max_tokens=50,
                       messages=[{"role": "user", "content": "scan"}])
    with raw_client(proxy) as c:
        r = c.post("https://chatgpt.com/backend-api/codex/responses",
                   headers={"authorization": f"Bearer {token}"},
                   json={"model": "gpt-5", "input": "codex", "store": False})
        assert r.status_code == 200, r.text
        echo = c.post(f"{fake_upstream.url}/echo/other-host",
                      headers={"authorization": f"Bearer {token}"}, content=b"{}")
        if gate:
            refused = c.post("https://api.openai.com/v1/responses",
                             headers={"authorization": "Bearer not-a-client"},
                             json={"model": "gpt-5", "input": "x"})
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "unknown_client"
    # subscription logins: a token the provider refuses (refreshed on the way) and a login
    # that died (revoked: log in again); clients see neither, nothing shows a token
    with fake_upstream.lock:
        fake_upstream.oauth.expire("sub-codex")
        fake_upstream.oauth.revoke("sub-claude")
    told = b""
    with raw_client(proxy) as c:
        for i in range(3):
            r = c.post("https://chatgpt.com/backend-api/codex/responses",
                       headers={"authorization": f"Bearer {token}", "session-id": f"cx-{i}"},
                       json={"model": "gpt-5", "input": f"codex {i}", "store": False})
            assert r.status_code == 200, r.text
            told += r.content
        for i in range(5):
            r = c.post("https://api.anthropic.com/v1/messages?beta=true",
                       headers={"x-api-key": token, "anthropic-version": "2023-06-01",
                                "x-claude-code-session-id": f"cl-{i}"},
                       json={"model": "claude-sonnet-4-5", "max_tokens": 20,
                             "messages": [{"role": "user", "content": f"claude {i}"}]})
            assert r.status_code == 200, r.text
            told += r.content
    secrets = SECRETS + sorted(fake_upstream.oauth.secrets())
    assert fake_upstream.oauth.refreshes("sub-codex") >= 1
    assert_no_secret("the answers clients got", told, secrets)
    # a non-account host carries the client's own credential and nothing of ours
    assert_no_secret("the non-account host's request", json.dumps(echo.json()).encode(),
                     secrets)
    served = fake_upstream.requests()
    assert {e["account"] for e in served if e["api"] != "other"} >= {"openai-a", "chatgpt-a"} \
        or len({e["account"] for e in served}) >= 3
    assert {"sub-codex", "sub-claude"} <= {e["account"] for e in served}
    assert all(e["credential"] in secrets for e in served if e["api"] != "other")
    assert all(e["credential"] != "not-a-client" for e in served)  # refused before any account
    assert not any("[stickyroute:" in json.dumps(e["headers"]) for e in served)

    answers = b""
    with httpx2.Client(base_url=f"http://127.0.0.1:{admin_port}", trust_env=False, timeout=10,
                       headers={"authorization": "Bearer admin-token-secrets"}) as admin:
        for path in ("/api/state", "/api/sessions", "/api/accounts", "/metrics", "/"):
            r = admin.get(path)
            assert r.status_code == 200, path
            answers += r.content
    assert b"openai-a" in answers  # the aliases are there, the keys are not
    assert b"revoked: log in again" in answers
    assert_no_secret("the admin API's answers", answers, secrets)
    out = proxy.stop()
    assert "sub-claude healthy -> disabled: revoked: log in again" in out
    assert_no_secret("mitmdump output", out.encode(), secrets)
    assert "Authorization" in out or "authorization" in out  # flow_detail=3 did print headers
    data = flows_file.read_bytes()
    assert_no_secret("the -w flow file", data, secrets)
    with flows_file.open("rb") as fh:
        flows = list(mitmio.FlowReader(fh).stream())
    signed = [f for f in flows if "stickyroute.signed" in f.metadata]
    assert len(signed) >= 6
    for f in signed:
        alias, names = f.metadata["stickyroute.signed"]
        for name in names:
            assert f.request.headers[name].endswith(f"[stickyroute:{alias}]")
