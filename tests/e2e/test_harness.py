"""The e2e harness itself: mitmdump + redirect addon + SDK clients reach the fake upstream.

No stickyroute here: nothing rewrites credentials, so the fake sees the client's own key.
"""

from __future__ import annotations

import json
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import zstandard

from devtools.harness import (
    CLIENT_PLACEHOLDER_KEY,
    NOOP_ADDON,
    REDIRECT_ADDON,
    Mitmdump,
    anthropic_client,
    format_options,
    make_fake,
    openai_client,
    raw_client,
    redirect_options,
)
from fakeapi import FakeUpstream
from tests.e2e.helpers import MitmdumpFactory

OPENAI_KEY, ANTHROPIC_KEY = "sk-test-openai-a", "sk-ant-test-a"
MSGS: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def proxy(module_fake_upstream: FakeUpstream,
          module_mitmdump_factory: MitmdumpFactory) -> Mitmdump:
    return module_mitmdump_factory([REDIRECT_ADDON], redirect_options(module_fake_upstream))


@pytest.fixture
def fake(module_fake_upstream: FakeUpstream) -> FakeUpstream:
    module_fake_upstream.reset()
    return module_fake_upstream


def only_entry(fake: FakeUpstream) -> dict[str, Any]:
    entries = fake.requests()
    assert len(entries) == 1, entries
    return entries[0]


def test_openai_sdk_through_proxy(proxy: Mitmdump, fake: FakeUpstream) -> None:
    client = openai_client(proxy, api_key=OPENAI_KEY)
    r = client.responses.create(model="gpt-fake", input="hi")
    assert r.id.startswith("resp_") and r.usage is not None
    entry = only_entry(fake)
    assert entry["original_host"] == "api.openai.com" and entry["path"] == "/v1/responses"
    assert entry["credential"] == OPENAI_KEY and entry["account"] == "openai-a"

    with client.responses.stream(model="gpt-fake", input="more",
                                 previous_response_id=r.id) as stream:
        final = stream.get_final_response()
    assert final.previous_response_id == r.id and final.usage is not None

    chunks = list(client.chat.completions.create(
        model="gpt-fake", messages=MSGS, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0


def test_anthropic_sdk_through_proxy(proxy: Mitmdump, fake: FakeUpstream) -> None:
    client = anthropic_client(proxy, api_key=ANTHROPIC_KEY)
    m = client.messages.create(model="claude-fake", max_tokens=20, messages=MSGS)
    assert m.id.startswith("msg_") and m.usage.output_tokens == 20
    with client.messages.stream(model="claude-fake", max_tokens=20, messages=MSGS) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens == 20
    entries = fake.requests()
    assert [e["original_host"] for e in entries] == ["api.anthropic.com"] * 2
    assert [e["credential"] for e in entries] == [ANTHROPIC_KEY] * 2
    assert entries[1]["stream"] is True


def test_placeholder_key_arrives_unchanged(proxy: Mitmdump, fake: FakeUpstream) -> None:
    with pytest.raises(openai.AuthenticationError):
        openai_client(proxy).responses.create(model="gpt-fake", input="hi")
    with pytest.raises(anthropic.AuthenticationError):
        anthropic_client(proxy).messages.create(model="c", max_tokens=5, messages=MSGS)
    assert [e["credential"] for e in fake.requests()] == [CLIENT_PLACEHOLDER_KEY] * 2
    assert [e["status"] for e in fake.requests()] == [401, 401]


def test_raw_zstd_request_to_chatgpt_backend(proxy: Mitmdump, fake: FakeUpstream) -> None:
    body = json.dumps({"model": "gpt-5-codex", "input": "hi", "store": False,
                       "stream": True}).encode()
    with raw_client(proxy) as client:
        r = client.post("https://chatgpt.com/backend-api/codex/responses",
                        content=zstandard.ZstdCompressor().compress(body), headers={
                            "authorization": "Bearer tok-chatgpt-a",
                            "chatgpt-account-id": "chatgpt-account-id-a",
                            "content-encoding": "zstd", "content-type": "application/json"})
    assert r.status_code == 200 and "response.completed" in r.text
    entry = only_entry(fake)
    assert entry["account"] == "chatgpt-a" and entry["original_host"] == "chatgpt.com"


def test_other_hosts_go_straight_through(proxy: Mitmdump, fake: FakeUpstream) -> None:
    with make_fake() as other, raw_client(proxy) as client:
        r = client.get(f"{other.url}/hello", headers={"authorization": "Bearer mine"})
        assert r.status_code == 200 and r.json()["path"] == "/hello"
        assert "x-fake-original-host" not in r.json()["headers"]
        assert other.requests()[0]["credential"] == "mine"
    assert fake.requests() == []


STREAM_RESPONSES = """
class StreamResponses:
    def responseheaders(self, flow):
        flow.response.stream = True
addons = [StreamResponses()]
"""


def test_stall_is_visible_through_a_streaming_proxy(
        fake: FakeUpstream, tmp_path: Path, mitmdump_factory: MitmdumpFactory) -> None:
    """With response streaming on, the first SSE event reaches the client during a stall."""
    script = tmp_path / "stream_responses.py"
    script.write_text(STREAM_RESPONSES)
    streaming = mitmdump_factory([script, REDIRECT_ADDON], redirect_options(fake))
    fake.add_fault(kind="stall", delay=30)
    first = threading.Event()
    started = time.monotonic()
    with openai_client(streaming, api_key=OPENAI_KEY) as client:
        stream = client.responses.create(model="gpt-fake", input="hi", stream=True)
        releaser = threading.Timer(1.0, fake.release_stalls)
        releaser.start()
        types = []
        for event in stream:
            if not first.is_set():
                first.set()
                assert time.monotonic() - started < 1.0  # arrived before the release
            types.append(event.type)
        releaser.join()
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert time.monotonic() - started >= 1.0


def test_buffering_proxy_delays_the_first_event(proxy: Mitmdump, fake: FakeUpstream) -> None:
    """The converse: plain mitmdump buffers SSE, so a stall holds back even the first event."""
    fake.add_fault(kind="stall", delay=1.0)
    started = time.monotonic()
    with openai_client(proxy, api_key=OPENAI_KEY) as client:
        stream = client.responses.create(model="gpt-fake", input="hi", stream=True)
        next(iter(stream))
        assert time.monotonic() - started >= 1.0
        stream.close()


def test_large_streamed_request_body_is_redirected(
        fake: FakeUpstream, mitmdump_factory: MitmdumpFactory) -> None:
    proxy = mitmdump_factory([REDIRECT_ADDON],
                             {**redirect_options(fake), "stream_large_bodies": "1k"})
    r = openai_client(proxy, api_key=OPENAI_KEY).responses.create(
        model="gpt-fake", input="x" * 5000)
    assert r.usage is not None and r.usage.input_tokens > 1000
    assert only_entry(fake)["original_host"] == "api.openai.com"


def test_noop_baseline_addon_loads(fake: FakeUpstream, mitmdump_factory: MitmdumpFactory) -> None:
    proxy = mitmdump_factory([NOOP_ADDON, REDIRECT_ADDON], redirect_options(fake))
    r = openai_client(proxy, api_key=OPENAI_KEY).chat.completions.create(
        model="gpt-fake", messages=MSGS)
    assert r.usage is not None and only_entry(fake)["api"] == "chat"


def test_addon_log_lines_reach_output(tmp_path: Path, mitmdump_factory: MitmdumpFactory) -> None:
    script = tmp_path / "logs.py"
    script.write_text(textwrap.dedent("""
        import logging
        class A:
            def running(self):
                logging.getLogger("stickyroute.x").info("hello from %s", "an addon")
        addons = [A()]
    """))
    proxy = mitmdump_factory([script])
    assert proxy.wait_for_output(r"hello from an addon", timeout=5)
    assert "hello from an addon" in proxy.stop()


def test_broken_script_fails_fast(tmp_path: Path) -> None:
    script = tmp_path / "broken.py"
    script.write_text("raise RuntimeError('boom at import')\n")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="boom at import"):
        Mitmdump([script], confdir=tmp_path / "conf").start(timeout=20)
    assert time.monotonic() - started < 10


def test_bad_redirect_option_fails_fast(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="fake_upstream"):
        Mitmdump([REDIRECT_ADDON], {"fake_upstream": "nonsense"},
                 confdir=tmp_path / "conf").start(timeout=20)


def test_format_options() -> None:
    assert format_options({"a": True, "b": ["x", "y"], "c": 3, "d": None}) == [
        "--set", "a=true", "--set", "b=x", "--set", "b=y", "--set", "c=3"]
