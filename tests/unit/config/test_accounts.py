import os
import textwrap

import pytest

from stickyroute.config.accounts import AccountsError, load_accounts, parse_accounts


def parse(text: str, env=None, base_dir=None):
    kw = {"env": env or {}}
    if base_dir:
        kw["base_dir"] = base_dir
    return parse_accounts(textwrap.dedent(text), **kw)


def test_full_account_and_defaults(tmp_path):
    (tmp_path / "b.key").write_text("sk-from-file\n")
    accounts = parse(
        """
        accounts:
          - alias: work-a
            provider: openai
            api_key: ${KEY_A}
            weight: 2
            headers: {OpenAI-Project: proj_1}
          - alias: b
            provider: anthropic
            api_key_file: b.key
          - alias: c
            provider: chatgpt
            api_key: tok
            account_id: acct-1
            enabled: false
        """,
        env={"KEY_A": "sk-env"},
        base_dir=tmp_path,
    )
    a, b, c = accounts.accounts
    assert a.api_key == "sk-env" and a.weight == 2 and a.hosts == ("api.openai.com",)
    assert a.credential_headers() == [("authorization", "Bearer sk-env"),
                                      ("openai-project", "proj_1")]
    assert b.api_key == "sk-from-file" and b.credential_headers() == [("x-api-key", "sk-from-file")]
    assert c.credential_headers() == [("authorization", "Bearer tok"),
                                      ("chatgpt-account-id", "acct-1")]
    assert not c.enabled
    assert accounts.provider_for_host("api.anthropic.com") == "anthropic"
    assert accounts.provider_for_host("example.com") is None
    assert "sk-env" not in repr(a)


@pytest.mark.parametrize(
    "text, match",
    [
        ("accounts: [\n", r"^\d+: broken YAML"),
        ("accounts:\n  - alias: a\n    provider: gemini\n    api_key: k\n", r"^3: a: unknown provider"),
        ("accounts:\n  - alias: a\n    provider: openai\n    api_key: k\n"
         "  - alias: a\n    provider: openai\n    api_key: k\n", r"^5: duplicate alias 'a' \(first on line 2\)"),
        ("accounts:\n  - alias: a\n    provider: openai\n    api_key: ${NOPE}\n", r"^4: a: api_key uses \$\{NOPE\}, which is not set"),
        ("accounts:\n  - alias: a\n    provider: openai\n    api_key_file: /nonexistent/k\n", r"^4: a: cannot read api_key_file"),
        ("accounts:\n  - alias: a\n    provider: openai\n", r"^2: a: give exactly one of"),
        ("accounts:\n  - alias: 'bad alias'\n    provider: openai\n    api_key: k\n", r"^2: alias must be"),
        ("accounts:\n  - alias: a\n    provider: openai\n    api_key: k\n    wieght: 2\n", r"^5: unknown field 'wieght'"),
        ("accounts:\n  - alias: a\n    provider: openai\n    api_key: k\n    weight: 0\n", r"^5: a: weight"),
        ("accounts:\n  - alias: a\n    provider: chatgpt\n    api_key: k\n", r"^2: a: a chatgpt account needs"),
        ("accounts:\n  - alias: a\n    provider: openai\n    api_key: k\n    hosts: [x.test]\n"
         "  - alias: b\n    provider: anthropic\n    api_key: k\n    hosts: [x.test]\n", r"^6: host 'x.test'"),
        ("acounts: []\n", r"^1: unknown key 'acounts'"),
        ("- a\n", r"^1: expected a mapping"),
    ],
)
def test_errors_name_line_and_reason(text, match):
    with pytest.raises(AccountsError, match=match):
        parse_accounts(text, env={})


def test_error_never_shows_the_key():
    with pytest.raises(AccountsError) as e:
        parse_accounts("accounts:\n  - alias: a\n    provider: nope\n    api_key: sk-secret-1\n", env={})
    assert "sk-secret-1" not in str(e.value)


def test_load_accounts_prefixes_the_file(tmp_path):
    p = tmp_path / "acc.yaml"
    p.write_text("accounts:\n  - alias: a\n    provider: nope\n    api_key: k\n")
    with pytest.raises(AccountsError, match=rf"^{p}:3: a: unknown provider"):
        load_accounts(p)
    with pytest.raises(AccountsError, match="cannot read accounts file"):
        load_accounts(tmp_path / "missing.yaml")


def test_env_is_read_from_process_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("STICKY_TEST_KEY", "sk-x")
    p = tmp_path / "acc.yaml"
    p.write_text("accounts:\n  - alias: a\n    provider: openai\n    api_key: ${STICKY_TEST_KEY}\n")
    assert load_accounts(p).accounts[0].api_key == "sk-x"
    assert os.environ["STICKY_TEST_KEY"] == "sk-x"
