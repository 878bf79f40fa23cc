"""Issue 3 end to end: real mitmdump, real SDK clients, the fake upstream behind it."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from devtools.harness import (
    REDIRECT_ADDON,
    REPO,
    STICKY_ADDON,
    Mitmdump,
    anthropic_client,
    openai_client,
    proxy_ssl_context,
    raw_client,
    redirect_options,
)
from fakeapi import FakeUpstream
from tests.e2e.helpers import MitmdumpFactory

ACCOUNTS = """\
accounts:
  - {alias: oa, provider: openai, api_key: sk-test-openai-a}
  - {alias: ob, provider: openai, api_key: sk-test-openai-b}
  - {alias: oc, provider: openai, api_key: sk-test-openai-c}
  - {alias: aa, provider: anthropic, api_key: sk-ant-test-a}
  - {alias: ab, provider: anthropic, api_key: sk-ant-test-b}
prices:
  gpt-fake: {input: 1, cached_input: 0.1, output: 4}
"""
ALIAS_OF = {"openai-a": "oa", "openai-b": "ob", "openai-c": "oc",
            "anthropic-a": "aa", "anthropic-b": "ab"}
META_DUMP = REPO / "devtools" / "meta_dump_addon.py"
LONG = "The quick brown fox considers the cache. " * 200  # > 1024 tokens: cacheable


def start(factory: MitmdumpFactory, fake: FakeUpstream, tmp_path: Path, **options: Any) -> Mitmdump:
    accounts = tmp_path / "accounts.yaml"
    accounts.write_text(ACCOUNTS)
    opts = {"sticky_accounts": str(accounts), "meta_dump": str(tmp_path / "meta.jsonl"),
            **redirect_options(fake), **options}
    return factory([STICKY_ADDON, REDIRECT_ADDON, META_DUMP], opts)


def metas(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "meta.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def completed_id(events: Any) -> str:
    for ev in events:
        if ev.type == "response.completed":
            return str(ev.response.id)
    raise AssertionError("no response.completed event")


def test_previous_response_id_chains_stay_on_their_account(
        fake_upstream: FakeUpstream, mitmdump_factory: MitmdumpFactory, tmp_path: Path) -> None:
    # No session header, no prompt_cache_key, nothing injected: only the chain can keep a
    # conversation on the account that stored its previous response.
    proxy = start(mitmdump_factory, fake_upstream, tmp_path, sticky_inject_cache_key=False,
                  sticky_strategy="round-robin")
    client = openai_client(proxy)
    for chain in range(10):
        prev = None
        for turn in range(4):
            stream = (chain + turn) % 2 == 1
            r = client.responses.create(model="gpt-fake", input=f"chain {chain} turn {turn}",
                                        previous_response_id=prev, stream=stream)
            prev = completed_id(r) if stream else r.id
    log = [e for e in fake_upstream.requests() if e["api"] == "responses"]
    assert len(log) == 40
    assert [e for e in log if e["error_code"] == "previous_response_not_found"] == []
    assert all(e["status"] == 200 and e["prompt_cache_key"] is None for e in log)
    assert len({e["account"] for e in log}) == 3  # round-robin spread the chains
    seen = {m["response_id"]: m for m in metas(tmp_path)}
    chained = [seen[e["response_id"]] for e in log if e["previous_response_id"]]
    assert len(chained) == 30 and all(m["hard"] for m in chained)
    assert all(m["session_source"].startswith("chain:") for m in chained)


def test_usage_equals_upstream_log(
        fake_upstream: FakeUpstream, mitmdump_factory: MitmdumpFactory, tmp_path: Path) -> None:
    proxy = start(mitmdump_factory, fake_upstream, tmp_path)
    oai, ant = openai_client(proxy), anthropic_client(proxy)
    for stream in (False, True):
        for _ in range(2):  # the second time is served from the cache
            sid = {"session-id": f"usage-{stream}"}
            r = oai.responses.create(model="gpt-fake", input=LONG, stream=stream,
                                     extra_headers=sid)
            if stream:
                completed_id(r)
            c = oai.chat.completions.create(
                model="gpt-fake", messages=[{"role": "user", "content": LONG}], stream=stream,
                extra_headers=sid, **({"stream_options": {"include_usage": True}} if stream else {}))
            if stream:
                list(c)
            m = ant.messages.create(
                model="claude-fake", max_tokens=50, stream=stream, extra_headers=sid,
                messages=[{"role": "user", "content": [
                    {"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}]}])
            if stream:
                list(m)
    seen = {m["response_id"]: m for m in metas(tmp_path)}
    log = fake_upstream.requests()
    assert len(log) == 12
    for entry in log:
        meta = seen[entry["response_id"]]
        usage = entry["usage"]
        got = (meta["tokens_in"], meta["tokens_cached"], meta["tokens_out"])
        assert got == (usage["input_tokens"], usage["cached_tokens"], usage["output_tokens"]), entry
        assert meta["account"] == ALIAS_OF[entry["account"]]
    assert sum(m["tokens_cached"] > 0 for m in seen.values()) >= 6  # at least every 2nd call
    oa_like = [m for m in seen.values() if m["model"] == "gpt-fake"]
    assert all(m["priced"] and m["cost_micros"] > 0 for m in oa_like)
    out = proxy.output()
    assert "AFFINITY BREAK" not in out and "cached" in out and "%)" in out


def test_stream_first_byte_before_upstream_finishes(
        fake_upstream: FakeUpstream, mitmdump_factory: MitmdumpFactory, tmp_path: Path) -> None:
    proxy = start(mitmdump_factory, fake_upstream, tmp_path)
    fake_upstream.add_fault(kind="stall")  # pauses after the first event until released
    got_first = threading.Event()
    with raw_client(proxy, timeout=20) as http, http.stream(
            "POST", "https://api.openai.com/v1/responses",
            headers={"authorization": "Bearer sk-client-placeholder"},
            json={"model": "gpt-fake", "input": "hi", "stream": True}) as resp:
        chunks = resp.iter_raw()
        first = next(chunks)  # would block until the stall ends if the proxy buffered
        got_first.set()
        assert b"response.created" in first
        assert not fake_upstream.requests()[0]["completed"]  # the upstream is still mid-stream
        fake_upstream.release_stalls()
        rest = b"".join(chunks)
    assert b"response.completed" in rest
    assert proxy.wait_for_output(r"in \d+ / out 20 / cached 0 \(0%\)")


def ws_turn(ws: Any, frame: dict[str, Any]) -> dict[str, Any]:
    ws.send(json.dumps({"type": "response.create", **frame}))
    while True:
        event = json.loads(ws.recv(timeout=20))
        if event["type"] in ("response.completed", "error"):
            return event


def test_websocket_handshake_frames_and_chain_affinity(
        fake_upstream: FakeUpstream, mitmdump_factory: MitmdumpFactory, tmp_path: Path) -> None:
    proxy = start(mitmdump_factory, fake_upstream, tmp_path, sticky_strategy="round-robin")
    headers = {"authorization": "Bearer sk-client-placeholder", "session-id": "codex-thread-1"}

    def ws() -> Any:
        return connect("wss://api.openai.com/v1/responses", proxy=proxy.proxy_url,
                       ssl=proxy_ssl_context(proxy), additional_headers=headers)

    with ws() as conn:
        first = ws_turn(conn, {"model": "gpt-fake", "input": "hello over ws"})
    assert first["type"] == "response.completed", first
    with ws() as conn:  # a new connection continues the chain
        second = ws_turn(conn, {"model": "gpt-fake", "input": "and again",
                                "previous_response_id": first["response"]["id"]})
    assert second["type"] == "response.completed", second
    # Plain HTTP with nothing but previous_response_id lands where the WebSocket's state is.
    third = openai_client(proxy).responses.create(
        model="gpt-fake", input="over http", previous_response_id=second["response"]["id"])
    log = [e for e in fake_upstream.requests() if e["api"] == "responses"]
    assert len(log) == 3 and all(e["status"] == 200 for e in log), log
    assert log[0]["ws"] and log[1]["ws"] and len({e["account"] for e in log}) == 1
    assert log[0]["credential"].startswith("sk-test-openai-")  # handshake rewritten
    assert log[0]["prompt_cache_key"].startswith("sr-")  # injected into the frame
    assert log[0]["prompt_cache_key"] == log[1]["prompt_cache_key"]
    assert third.id == log[2]["response_id"]
    out = proxy.output()
    usage = log[0]["usage"]
    assert f"in {usage['input_tokens']} / out {usage['output_tokens']} / cached" in out
    assert "websocket open" in out and "AFFINITY BREAK" not in out
