"""Who may spend the accounts: loopback clients, gate clients, or everyone when allowed."""

import hashlib

import pytest

from stickyroute.config.accounts import parse_accounts
from stickyroute.core.admission import Admitted, Refused, admit, is_loopback

ACCOUNTS = parse_accounts("""\
accounts:
  - {alias: oa, provider: openai, api_key: sk-a}
  - {alias: an, provider: anthropic, api_key: sk-b}
""")
TOKEN = "tok-alice"
GATED = parse_accounts(f"""\
accounts:
  - {{alias: oa, provider: openai, api_key: sk-a}}
  - {{alias: an, provider: anthropic, api_key: sk-b}}
clients:
  - {{name: alice, token_hash: "sha256:{hashlib.sha256(TOKEN.encode()).hexdigest()}",
      accounts: [oa]}}
""")


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True),
    ("::ffff:127.0.0.1", True),  # IPv4-mapped IPv6 from a dual-stack socket
    ("0:0:0:0:0:ffff:7f00:1", True),
    ("::ffff:192.0.2.2", False), ("192.0.2.2", False), ("10.0.0.1", False),
    ("fd00::2", False), ("fe80::1%eth0", False), ("::", False), ("0.0.0.0", False),
    ("localhost", False),  # a name is not an address: mitmproxy reports addresses
    ("", False), ("?", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def never() -> list[str]:
    raise AssertionError("tokens are read only when a gate must check them")


@pytest.mark.parametrize("local, allow_remote, admitted", [
    (True, False, True), (False, True, True), (True, True, True), (False, False, False),
])
def test_without_a_gate_the_address_decides(local, allow_remote, admitted):
    verdict = admit("openai", ACCOUNTS, local=local, allow_remote=allow_remote,
                    known_client=None, tokens=never)
    if admitted:
        assert verdict == Admitted(None)
    else:
        assert isinstance(verdict, Refused) and verdict.status == 403
        assert verdict.code == "remote_client_not_allowed"
        for advice in ("locally", "clients:", "sticky_allow_remote=true"):
            assert advice in verdict.message


@pytest.mark.parametrize("local", [True, False])
def test_with_a_gate_every_client_needs_a_token(local):
    refused = admit("openai", GATED, local=local, allow_remote=False, known_client=None,
                    tokens=lambda: ["wrong"])
    assert isinstance(refused, Refused) and refused.status == 401
    assert refused.code == "unknown_client"
    ok = admit("openai", GATED, local=local, allow_remote=False, known_client=None,
               tokens=lambda: ["wrong", TOKEN])
    assert isinstance(ok, Admitted) and ok.client is not None and ok.client.name == "alice"


def test_a_gate_client_gets_only_its_accounts_and_replays_keep_their_client():
    no_anthropic = admit("anthropic", GATED, local=False, allow_remote=False,
                         known_client=None, tokens=lambda: [TOKEN])
    assert isinstance(no_anthropic, Refused) and no_anthropic.status == 403
    assert no_anthropic.code == "client_not_allowed"
    replay = admit("openai", GATED, local=True, allow_remote=False, known_client="alice",
                   tokens=never)
    assert isinstance(replay, Admitted) and replay.client is not None


def test_refusals_never_carry_a_token():
    verdict = admit("openai", GATED, local=False, allow_remote=False, known_client=None,
                    tokens=lambda: ["sk-guess-1234"])
    assert isinstance(verdict, Refused) and "sk-guess" not in verdict.message
