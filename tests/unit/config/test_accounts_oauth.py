"""Accounts file: `oauth_file` accounts (Codex / Claude Code logins), their errors and headers."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from stickyroute.config.accounts import AccountsError, load_accounts, parse_accounts
from stickyroute.config.oauth import CLAUDE_TOKEN_URL, CODEX_CLIENT_ID, CODEX_TOKEN_URL, Tokens
from stickyroute.core.oauth import merge_beta
from stickyroute.core.rewrite import set_credentials

from .test_loginfile import ACCESS, CLAUDE_DOC, CODEX_DOC


@pytest.fixture
def logins(tmp_path: Path) -> Path:
    (tmp_path / "auth.json").write_text(json.dumps(CODEX_DOC))
    (tmp_path / "claude.json").write_text(json.dumps(CLAUDE_DOC))
    for p in tmp_path.iterdir():
        p.chmod(0o600)
    return tmp_path


def parse(text: str, base: Path):  # type: ignore[no-untyped-def]
    return parse_accounts(textwrap.dedent(text), base_dir=base, env={})


def test_both_shapes(logins: Path) -> None:
    accounts = parse("""
        accounts:
          - alias: sub-c
            provider: chatgpt
            oauth_file: auth.json
          - alias: sub-a
            provider: anthropic
            oauth_file: claude.json
            token_url: http://127.0.0.1:9999/v1/oauth/token
            client_id: test-client
        """, logins)
    c, a = accounts.accounts
    assert c.oauth is not None and a.oauth is not None
    assert (c.oauth.provider, c.oauth.file, c.oauth.token_url, c.oauth.client_id) == (
        "chatgpt", str(logins / "auth.json"), CODEX_TOKEN_URL, CODEX_CLIENT_ID)
    assert (a.oauth.token_url, a.oauth.client_id) == (
        "http://127.0.0.1:9999/v1/oauth/token", "test-client")
    assert c.api_key == "" and c.account_id is None
    assert c.hosts == ("chatgpt.com",) and a.hosts == ("api.anthropic.com",)
    assert ACCESS not in repr(accounts) and "rt-1" not in repr(accounts)


def test_default_claude_token_url(logins: Path) -> None:
    (a,) = parse("accounts:\n  - {alias: a, provider: anthropic, oauth_file: claude.json}\n",
                 logins).accounts
    assert a.oauth is not None and a.oauth.token_url == CLAUDE_TOKEN_URL


def test_oauth_credential_headers(logins: Path) -> None:
    c, a, pinned = parse("""
        accounts:
          - {alias: c, provider: chatgpt, oauth_file: auth.json}
          - {alias: a, provider: anthropic, oauth_file: claude.json, headers: {x-extra: 1}}
          - {alias: p, provider: chatgpt, oauth_file: auth.json, account_id: acct-override}
        """, logins).accounts
    tokens = Tokens("live-access", "live-refresh", None, None, "acct-live")
    assert c.credential_headers(tokens) == [("authorization", "Bearer live-access"),
                                            ("chatgpt-account-id", "acct-live")]
    assert a.credential_headers(tokens) == [("authorization", "Bearer live-access"),
                                            ("x-extra", "1")]
    assert pinned.credential_headers(tokens)[1] == ("chatgpt-account-id", "acct-override")
    with pytest.raises(ValueError, match="^c: no login tokens to sign with$"):
        c.credential_headers()


def test_signing_an_anthropic_oauth_request(logins: Path) -> None:
    """What the glue does: the client's credentials go, the Bearer comes, the beta is merged."""
    (a,) = parse("accounts:\n  - {alias: a, provider: anthropic, oauth_file: claude.json}\n",
                 logins).accounts
    headers = {"x-api-key": "client-key", "authorization": "Bearer client",
               "anthropic-beta": "claude-code-20250219,oauth-2025-04-20",
               "anthropic-version": "2023-06-01"}
    set_credentials(headers, a.credential_headers(Tokens("live", "r")))
    headers["anthropic-beta"] = merge_beta([headers["anthropic-beta"]])
    assert headers == {"authorization": "Bearer live", "anthropic-version": "2023-06-01",
                       "anthropic-beta": "claude-code-20250219,oauth-2025-04-20"}


def test_key_accounts_ignore_tokens(logins: Path) -> None:
    (k,) = parse("accounts:\n  - {alias: k, provider: anthropic, api_key: sk-ant}\n",
                 logins).accounts
    assert k.credential_headers(Tokens("x", "y")) == [("x-api-key", "sk-ant")]


def test_chatgpt_account_id_comes_from_the_login(logins: Path) -> None:
    data = json.loads(json.dumps(CODEX_DOC))
    del data["tokens"]["account_id"]
    data["tokens"]["access_token"] = "opaque"
    (logins / "noid.json").write_text(json.dumps(data))
    with pytest.raises(AccountsError, match=r"^2: c: a chatgpt account needs 'account_id'"):
        parse("accounts:\n  - {alias: c, provider: chatgpt, oauth_file: noid.json}\n", logins)
    (c,) = parse("accounts:\n  - {alias: c, provider: chatgpt, oauth_file: noid.json, "
                 "account_id: given}\n", logins).accounts
    assert c.account_id == "given"


@pytest.mark.parametrize("entry, match", [
    ("    provider: openai\n    oauth_file: auth.json\n",
     r"^4: a: oauth_file is for provider chatgpt .* not openai"),
    ("    provider: chatgpt\n    oauth_file: claude.json\n",
     r"^4: a: oauth_file .*claude.json holds a Claude Code .credentials.json login, which is not "
     r"for provider chatgpt"),
    ("    provider: anthropic\n    oauth_file: auth.json\n",
     r"^4: a: oauth_file .*auth.json holds a Codex CLI auth.json login"),
    ("    provider: chatgpt\n    oauth_file: missing.json\n",
     r"^4: a: oauth_file .*missing.json: cannot read"),
    ("    provider: chatgpt\n    oauth_file: garbage.json\n",
     r"^4: a: oauth_file .*garbage.json: neither a Codex auth.json"),
    ("    provider: chatgpt\n    oauth_file: [x]\n", r"^4: a: oauth_file must be a path"),
    ("    provider: chatgpt\n    oauth_file: auth.json\n    api_key: k\n",
     r"^2: a: give exactly one of 'api_key', 'api_key_file' or 'oauth_file'"),
    ("    provider: chatgpt\n    oauth_file: auth.json\n    token_url: http://auth.example/t\n",
     r"^5: a: token_url must use https \(plain http only to a loopback host\)"),
    ("    provider: chatgpt\n    oauth_file: auth.json\n    token_url: 5\n",
     r"^5: a: token_url must be an https:// URL"),
    ("    provider: chatgpt\n    oauth_file: auth.json\n    client_id: ''\n",
     r"^5: a: client_id must be a non-empty string"),
    ("    provider: openai\n    api_key: k\n    token_url: https://x/t\n",
     r"^5: a: token_url goes with oauth_file only"),
    ("    provider: openai\n    api_key: k\n    client_id: c\n",
     r"^5: a: client_id goes with oauth_file only"),
])
def test_errors_name_the_line(logins: Path, entry: str, match: str) -> None:
    (logins / "garbage.json").write_text('{"x": 1}')
    with pytest.raises(AccountsError, match=match):
        parse_accounts("accounts:\n  - alias: a\n" + entry, base_dir=logins, env={})


def test_errors_never_show_a_token(logins: Path) -> None:
    (logins / "half.json").write_text(json.dumps({"tokens": {"access_token": "SECRET-AT"}}))
    with pytest.raises(AccountsError) as e:
        parse("accounts:\n  - {alias: c, provider: chatgpt, oauth_file: half.json}\n", logins)
    assert "SECRET-AT" not in str(e.value) and "tokens.refresh_token is missing" in str(e.value)


def test_login_files_are_checked_for_permissions(logins: Path) -> None:
    path = logins / "accounts.yaml"
    path.write_text("accounts:\n  - {alias: c, provider: chatgpt, oauth_file: auth.json}\n")
    accounts = load_accounts(path)
    assert accounts.files == (str(path), str(logins / "auth.json"))
