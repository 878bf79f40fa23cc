"""config/clients.py: where a client's token comes from, and the `clients:` section's errors."""

import base64

import pytest

from stickyroute.config.accounts import AccountsError, parse_accounts
from stickyroute.config.clients import client_tokens
from tests.helpers import token_sha as sha

ACCOUNTS = """\
accounts:
  - alias: oa
    provider: openai
    api_key: sk-acct-oa
  - alias: ob
    provider: openai
    api_key: sk-acct-ob
  - alias: an
    provider: anthropic
    api_key: sk-ant-acct
"""


def test_client_tokens_from_every_place():
    assert client_tokens({"authorization": "Bearer t1", "x-api-key": "t2"}, None) == ["t1", "t2"]
    basic = "Basic " + base64.b64encode(b"u:t3").decode()
    assert client_tokens({}, basic) == ["t3"]
    assert client_tokens({"proxy-authorization": "Bearer t4"}, "Basic !!!") == ["t4"]


@pytest.mark.parametrize(("clients", "match"), [
    ("clients: []", r"^11: 'clients' must be a non-empty list"),
    ("clients:\n  - name: a\n    token_hash: abc\n    accounts: [oa]",
     r"^13: a: token_hash must be 'sha256:'"),
    (f"clients:\n  - name: a\n    token_hash: {sha('x')}\n    accounts: [zz]",
     r"^14: a: no account 'zz'"),
    (f"clients:\n  - name: a\n    token: {sha('x')}\n    accounts: [oa]",
     r"^13: unknown client field 'token'"),
    (f"clients:\n  - name: a\n    token_hash: {sha('x')}\n    accounts: [oa]\n"
     f"  - name: a\n    token_hash: {sha('y')}\n    accounts: [oa]", r"^15: duplicate client 'a'"),
])
def test_clients_section_errors_name_the_line(clients, match):
    text = ACCOUNTS.replace("    headers: {openai-project: proj-secret}\n", "") + clients + "\n"
    with pytest.raises(AccountsError, match=match):
        parse_accounts(text)
