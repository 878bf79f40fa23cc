"""Issue 2 end to end: a real mitmdump with stickyroute, the fake upstream and the SDK clients.

9 conversations x 3 turns per provider over 3 accounts each; every conversation must stay on one
account, every account must get at least two conversations, and no client key may arrive.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest

from devtools.harness import (
    ANTHROPIC_KEYS,
    CLIENT_PLACEHOLDER_KEY,
    OPENAI_KEYS,
    REDIRECT_ADDON,
    STICKY_ADDON,
    Mitmdump,
    anthropic_client,
    openai_client,
    raw_client,
    redirect_options,
    write_accounts,
)
from fakeapi import FakeUpstream
from tests.e2e.helpers import MitmdumpFactory


@pytest.fixture(scope="module")
def proxy(module_fake_upstream: FakeUpstream, module_mitmdump_factory: MitmdumpFactory,
          tmp_path_factory: pytest.TempPathFactory) -> Mitmdump:
    accounts = write_accounts(tmp_path_factory.mktemp("acc") / "accounts.yaml")
    return module_mitmdump_factory(
        [STICKY_ADDON, REDIRECT_ADDON],
        {"sticky_accounts": str(accounts), **redirect_options(module_fake_upstream)},
    )


@pytest.fixture
def fake(module_fake_upstream: FakeUpstream) -> FakeUpstream:
    module_fake_upstream.reset()
    return module_fake_upstream


def accounts_by_conversation(fake: FakeUpstream, tag_of: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for entry in fake.requests():
        assert entry["status"] == 200, entry
        out[tag_of(entry)].append(entry["account"])
    return out


def assert_sticky_and_spread(by_conv: dict[str, list[str]], accounts: list[str]) -> None:
    assert len(by_conv) == 9 and all(len(v) == 3 for v in by_conv.values()), by_conv
    for conv, served in by_conv.items():
        assert len(set(served)) == 1, f"{conv} hopped accounts: {served}"
    per_account: dict[str, int] = defaultdict(int)
    for served in by_conv.values():
        per_account[served[0]] += 1
    assert set(per_account) == set(accounts) and min(per_account.values()) >= 2, per_account


def test_openai_conversations_stay_on_one_account(proxy: Mitmdump, fake: FakeUpstream) -> None:
    client = openai_client(proxy)
    for conv in range(9):
        history: list[dict[str, Any]] = [{"role": "user", "content": f"task {conv}: fix bug"}]
        for turn in range(3):
            kw: dict[str, Any] = {}
            if conv % 3 == 0:  # Codex style: session header
                kw["extra_headers"] = {"session_id": f"codex-thread-{conv}"}
            elif conv % 3 == 1:  # explicit prompt_cache_key
                kw["prompt_cache_key"] = f"pck-{conv}"
            # conv % 3 == 2: nothing at all -> derived key
            stream = turn == 1
            if stream:
                with client.responses.stream(model="gpt-5", instructions="You are a coder.",
                                             input=history, **kw) as s:
                    text = s.get_final_response().output_text
            else:
                text = client.responses.create(model="gpt-5", instructions="You are a coder.",
                                               input=history, **kw).output_text
            history += [{"role": "assistant", "content": text},
                        {"role": "user", "content": f"turn {turn} more"}]
    entries = fake.requests()
    assert all(e["credential"] != CLIENT_PLACEHOLDER_KEY for e in entries)
    assert all(e["prompt_cache_key"] for e in entries)  # present or injected
    by_conv = accounts_by_conversation(
        fake, lambda e: json.dumps(e["body"]["input"][0]["content"]))
    assert_sticky_and_spread(by_conv, list(OPENAI_KEYS.values()))


def test_anthropic_conversations_stay_on_one_account(proxy: Mitmdump, fake: FakeUpstream) -> None:
    client = anthropic_client(proxy)
    for conv in range(9):
        messages: list[dict[str, Any]] = [{"role": "user", "content": f"task {conv}: refactor"}]
        for turn in range(3):
            kw: dict[str, Any] = {}
            if conv % 3 == 0:  # Claude Code style
                kw["extra_headers"] = {"X-Claude-Code-Session-Id": f"cc-{conv}"}
            elif conv % 3 == 1:
                kw["metadata"] = {"user_id": json.dumps({"device_id": "d", "session_id": f"s{conv}"})}
            system = [{"type": "text", "text": f"x-anthropic-billing-header: cch={conv}{turn};"},
                      {"type": "text", "text": "You are Claude Code."}]
            if turn == 1:
                with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100,
                                            system=system, messages=messages, **kw) as s:
                    reply = s.get_final_message()
            else:
                reply = client.messages.create(model="claude-sonnet-4-5", max_tokens=100,
                                               system=system, messages=messages, **kw)
            messages += [{"role": "assistant", "content": reply.content[0].text},
                         {"role": "user", "content": f"turn {turn} more"}]
    entries = fake.requests()
    assert all(e["credential"] != CLIENT_PLACEHOLDER_KEY for e in entries)
    by_conv = accounts_by_conversation(fake, lambda e: e["body"]["messages"][0]["content"])
    assert_sticky_and_spread(by_conv, list(ANTHROPIC_KEYS.values()))


def test_non_account_host_gets_no_account_credential(proxy: Mitmdump, fake: FakeUpstream) -> None:
    with raw_client(proxy) as client:
        r = client.post(f"{fake.url}/echo/anything", headers={"authorization": "Bearer mine",
                                                              "x-api-key": "mine-too"},
                        content=b'{"input": "x"}')
    echoed = r.json()["headers"]
    assert echoed["authorization"] == "Bearer mine" and echoed["x-api-key"] == "mine-too"
    secrets = list(OPENAI_KEYS) + list(ANTHROPIC_KEYS)
    assert not any(s in json.dumps(echoed) for s in secrets)


def test_log_line_per_routed_request(proxy: Mitmdump, fake: FakeUpstream) -> None:
    client = openai_client(proxy)
    client.responses.create(model="gpt-5", input="log me",
                            extra_headers={"x-sticky-session": "log-line-test"})
    assert proxy.wait_for_output(r"stickyroute: responses -> openai-\w .*session ine-test "
                                 r"\(header:x-sticky-session\) \| new")
    assert not any(s in proxy.output() for s in list(OPENAI_KEYS) + list(ANTHROPIC_KEYS))
