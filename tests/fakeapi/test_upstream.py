"""The fake upstream on its own (no proxy): per-account state, cache model, SDKs, faults."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import httpx2
import openai
import pytest
import zstandard

from devtools.harness import find_free_port
from fakeapi import FakeUpstream

KEY_A, KEY_B = "sk-test-openai-a", "sk-test-openai-b"
ANT_A, ANT_B = "sk-ant-test-a", "sk-ant-test-b"
CHATGPT = {"authorization": "Bearer tok-chatgpt-a", "chatgpt-account-id": "chatgpt-account-id-a"}
SYSTEM = "You are a careful assistant who answers briefly. " * 120  # ~1500 tokens
ENC = "reasoning.encrypted_content"


@pytest.fixture(scope="module")
def fake() -> Any:
    from devtools.harness import make_fake

    with make_fake() as f:
        yield f


@pytest.fixture
def http(fake: FakeUpstream) -> Any:
    fake.reset_log()
    fake.clear_faults()
    with httpx2.Client(base_url=fake.url, trust_env=False, timeout=10) as client:
        yield client
    fake.clear_faults()


def oa(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def ant(key: str) -> dict[str, str]:
    return {"x-api-key": key, "anthropic-version": "2023-06-01"}


def respond(http: httpx2.Client, key: str, **body: Any) -> httpx2.Response:
    return http.post("/v1/responses", headers=oa(key), json={"model": "gpt-fake", **body})


# ---- per-account server state ----


def test_previous_response_id_is_per_account(http: httpx2.Client) -> None:
    first = respond(http, KEY_A, input="hello").json()
    assert first["id"].startswith("resp_")
    assert respond(http, KEY_A, input="more", previous_response_id=first["id"]).status_code == 200

    other = respond(http, KEY_B, input="more", previous_response_id=first["id"])
    assert other.status_code == 400
    assert other.json() == {"error": {
        "message": f"Previous response with id '{first['id']}' not found.",
        "type": "invalid_request_error", "param": "previous_response_id",
        "code": "previous_response_not_found"}}


def test_store_false_is_not_stored(http: httpx2.Client) -> None:
    first = respond(http, KEY_A, input="hello", store=False).json()
    again = respond(http, KEY_A, input="x", previous_response_id=first["id"])
    assert again.json()["error"]["code"] == "previous_response_not_found"


def test_previous_response_chain_counts_as_prompt_prefix(http: httpx2.Client) -> None:
    first = respond(http, KEY_A, instructions=SYSTEM, input="hello").json()
    second = respond(http, KEY_A, input="next", previous_response_id=first["id"]).json()
    assert second["usage"]["input_tokens"] > first["usage"]["input_tokens"]
    assert second["usage"]["input_tokens_details"]["cached_tokens"] >= 1024


def test_ids_are_unique(http: httpx2.Client) -> None:
    ids = {respond(http, KEY_A, input="x").json()["id"] for _ in range(5)}
    assert len(ids) == 5


# ---- encrypted reasoning ----


def test_encrypted_reasoning_is_bound_to_its_account(http: httpx2.Client) -> None:
    out = respond(http, KEY_A, input="hi", reasoning={"effort": "low"}, include=[ENC],
                  store=False).json()["output"]
    reasoning = out[0]
    assert reasoning["type"] == "reasoning" and reasoning["id"].startswith("rs_")
    assert reasoning["summary"] == [] and reasoning["encrypted_content"]
    history = ["hi", reasoning, {"role": "assistant", "content": "ok"}, "again"]
    history = [{"role": "user", "content": h} if isinstance(h, str) else h for h in history]

    assert respond(http, KEY_A, input=history, include=[ENC]).status_code == 200
    moved = respond(http, KEY_B, input=history, include=[ENC])
    assert moved.status_code == 400
    assert moved.json()["error"]["code"] == "invalid_encrypted_content"
    assert moved.json()["error"]["message"] == (
        f"The encrypted content for item {reasoning['id']} could not be verified.")


def test_garbage_encrypted_content_is_rejected(http: httpx2.Client) -> None:
    item = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "garbage"}
    assert respond(http, KEY_A, input=[item]).json()["error"]["code"] == (
        "invalid_encrypted_content")


def test_reasoning_without_include_has_no_encrypted_content(http: httpx2.Client) -> None:
    out = respond(http, KEY_A, input="hi", reasoning={}).json()["output"]
    assert [o["type"] for o in out] == ["reasoning", "message"]
    assert "encrypted_content" not in out[0]


# ---- prompt cache model ----


def _turns(n: int) -> list[list[dict[str, str]]]:
    """n growing conversations: every turn repeats the previous ones in full."""
    history: list[dict[str, str]] = []
    turns = []
    for i in range(n):
        history = [*history, {"role": "user", "content": f"question {i} " + "detail " * 100}]
        turns.append(list(history))
        history.append({"role": "assistant", "content": f"answer {i} " + "words " * 60})
    return turns


def _responses_cached(http: httpx2.Client, key: str, msgs: list[dict[str, str]]) -> int:
    body = respond(http, key, instructions=SYSTEM, input=msgs, store=False).json()
    return int(body["usage"]["input_tokens_details"]["cached_tokens"])


def _chat_cached(http: httpx2.Client, key: str, msgs: list[dict[str, str]]) -> int:
    r = http.post("/v1/chat/completions", headers=oa(key), json={
        "model": "gpt-fake", "messages": [{"role": "system", "content": SYSTEM}, *msgs]})
    return int(r.json()["usage"]["prompt_tokens_details"]["cached_tokens"])


def _messages_cached(http: httpx2.Client, key: str, msgs: list[dict[str, str]]) -> int:
    system = [{"type": "text", "text": f"x-anthropic-billing-header: cch={time.time_ns()};"},
              {"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    r = http.post("/v1/messages?beta=true", headers=ant(key), json={
        "model": "claude-fake", "max_tokens": 100, "system": system, "messages": msgs})
    return int(r.json()["usage"]["cache_read_input_tokens"])


@pytest.mark.parametrize("api, keys", [
    (_responses_cached, (KEY_A, KEY_B)),
    (_chat_cached, (KEY_A, KEY_B)),
    (_messages_cached, (ANT_A, ANT_B)),
], ids=["responses", "chat", "messages"])
def test_cache_grows_per_account(fake: FakeUpstream, http: httpx2.Client, api: Any,
                                 keys: tuple[str, str]) -> None:
    fake.reset_accounts()
    own, other = keys
    t1, t2, t3 = _turns(3)
    cached = [api(http, own, t) for t in (t1, t2, t3)]
    assert cached[0] == 0
    assert 1024 <= cached[1] < cached[2]
    assert all(c % 128 == 0 for c in cached)
    assert api(http, other, t2) == 0  # another account has a cold cache


def test_anthropic_usage_split(fake: FakeUpstream, http: httpx2.Client) -> None:
    fake.reset_accounts()
    body = {"model": "claude-fake", "max_tokens": 10, "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "tail " * 50}]}]}
    first = http.post("/v1/messages", headers=ant(ANT_A), json=body).json()["usage"]
    assert first["cache_read_input_tokens"] == 0
    assert first["cache_creation_input_tokens"] > 1024 and 0 < first["input_tokens"] < 100
    second = http.post("/v1/messages", headers=ant(ANT_A), json=body).json()["usage"]
    assert second["cache_read_input_tokens"] >= 1024
    assert sum(second[k] for k in ("input_tokens", "cache_creation_input_tokens",
                                   "cache_read_input_tokens")) == sum(
        first[k] for k in ("input_tokens", "cache_creation_input_tokens",
                           "cache_read_input_tokens"))
    body.pop("messages")
    body["messages"] = [{"role": "user", "content": SYSTEM}]
    plain = http.post("/v1/messages", headers=ant(ANT_B), json=body).json()["usage"]
    assert plain["cache_creation_input_tokens"] == 0


def test_cache_expires_after_ttl() -> None:
    now = [0.0]
    with FakeUpstream(keys={"k": "a"}, cache_ttl=10, clock=lambda: now[0]) as f, \
            httpx2.Client(base_url=f.url, trust_env=False) as http:
        def cached() -> int:
            return _responses_cached(http, "k", _turns(1)[0])
        assert cached() == 0
        now[0] = 5
        assert cached() > 0
        now[0] = 16
        assert cached() == 0


# ---- SDK clients parse what the fake sends ----


@pytest.fixture
def oai(fake: FakeUpstream) -> openai.OpenAI:
    return openai.OpenAI(api_key=KEY_A, base_url=fake.url + "/v1", max_retries=0)


@pytest.fixture
def claude(fake: FakeUpstream) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=ANT_A, base_url=fake.url, max_retries=0)


def test_openai_sdk_responses(oai: openai.OpenAI) -> None:
    r = oai.responses.create(model="gpt-fake", input="hi", reasoning={"effort": "low"},
                             include=[ENC], extra_headers={"x-fake-output-tokens": "7"})
    assert r.id.startswith("resp_") and r.usage is not None
    assert r.usage.output_tokens == 7 and len(r.output_text.split()) == 7
    assert r.output[0].type == "reasoning" and r.output[0].encrypted_content

    with oai.responses.stream(model="gpt-fake", input="hi", previous_response_id=r.id) as s:
        types = [event.type for event in s]
        final = s.get_final_response()
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "response.output_text.delta" in types
    assert final.usage is not None and final.usage.input_tokens > 0
    assert final.output_text

    events = list(oai.responses.create(model="gpt-fake", input="x", stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].response.usage.input_tokens_details.cached_tokens == 0


def test_openai_sdk_chat(oai: openai.OpenAI) -> None:
    msgs: Any = [{"role": "user", "content": "hi"}]
    c = oai.chat.completions.create(model="gpt-fake", messages=msgs)
    assert c.id.startswith("chatcmpl-") and c.usage and c.usage.prompt_tokens > 0
    chunks = list(oai.chat.completions.create(model="gpt-fake", messages=msgs, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 0
    plain = list(oai.chat.completions.create(model="gpt-fake", messages=msgs, stream=True))
    assert all(ch.usage is None and ch.choices for ch in plain)
    text = "".join(ch.choices[0].delta.content or "" for ch in plain)
    assert text == c.choices[0].message.content


def test_anthropic_sdk(claude: anthropic.Anthropic) -> None:
    msgs: Any = [{"role": "user", "content": "hi"}]
    m = claude.messages.create(model="claude-fake", max_tokens=50, messages=msgs)
    assert m.id.startswith("msg_") and m.usage.output_tokens == 20
    with claude.messages.stream(model="claude-fake", max_tokens=50, messages=msgs) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == m.content[0].text  # type: ignore[union-attr]
    assert final.usage.output_tokens == 20 and final.usage.input_tokens == m.usage.input_tokens
    events = list(claude.messages.create(model="claude-fake", max_tokens=50, messages=msgs,
                                         stream=True))
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    assert events[0].message.usage.output_tokens == 1  # type: ignore[union-attr]


def test_anthropic_accepts_bearer_and_beta_query(http: httpx2.Client) -> None:
    r = http.post("/v1/messages?beta=true", headers=oa(ANT_A),
                  json={"model": "c", "max_tokens": 5, "messages": []})
    assert r.status_code == 200


# ---- request bodies, auth, echo, log ----


@pytest.mark.parametrize("encoding, compress", [
    ("zstd", lambda b: zstandard.ZstdCompressor().compress(b)),
    ("gzip", gzip.compress),
])
def test_compressed_request_body(fake: FakeUpstream, http: httpx2.Client, encoding: str,
                                 compress: Any) -> None:
    raw = json.dumps({"model": "gpt-5-codex", "input": "hi", "store": False}).encode()
    r = http.post("/backend-api/codex/responses", content=compress(raw),
                  headers={**CHATGPT, "content-encoding": encoding,
                           "content-type": "application/json"})
    assert r.status_code == 200, r.text
    entry = fake.requests()[-1]
    assert entry["account"] == "chatgpt-a" and entry["content_encoding"] == encoding
    assert entry["model"] == "gpt-5-codex" and entry["body_size"] < len(raw) + 20


def test_chatgpt_backend_needs_matching_account_id(http: httpx2.Client) -> None:
    r = http.post("/backend-api/codex/responses", json={"input": "x"},
                  headers={**CHATGPT, "chatgpt-account-id": "someone-else"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("path, headers, shape", [
    ("/v1/responses", {}, "openai"),
    ("/v1/chat/completions", oa("sk-unknown"), "openai"),
    ("/v1/messages", ant("sk-client-placeholder"), "anthropic"),
])
def test_unknown_key_is_401_and_logged(fake: FakeUpstream, http: httpx2.Client, path: str,
                                       headers: dict[str, str], shape: str) -> None:
    r = http.post(path, headers=headers, json={"model": "m"})
    assert r.status_code == 401
    if shape == "openai":
        assert r.json()["error"]["code"] == "invalid_api_key"
        assert r.json()["error"]["type"] == "invalid_request_error"
    else:
        assert r.json()["type"] == "error"
        assert r.json()["error"]["type"] == "authentication_error"
    entry = fake.requests()[-1]
    assert entry["status"] == 401 and entry["account"] is None
    assert entry["credential"] == (headers.get("x-api-key") or
                                   headers.get("authorization", "").removeprefix("Bearer "))


def test_echo_shows_exact_headers(fake: FakeUpstream, http: httpx2.Client) -> None:
    r = http.get("/api/claude_code/settings?x=1", headers={"x-custom": "v", **ant(ANT_A)})
    assert r.status_code == 200
    assert r.json()["path"] == "/api/claude_code/settings?x=1"
    assert r.json()["headers"]["x-custom"] == "v"
    assert r.json()["headers"]["x-api-key"] == ANT_A
    assert fake.requests()[-1]["api"] == "other"


def test_log_entry_fields(fake: FakeUpstream, http: httpx2.Client) -> None:
    respond(http, KEY_A, input="hi", prompt_cache_key="pck", include=[ENC], stream=True,
            extra=None)
    http.post("/v1/responses", headers={**oa(KEY_A), "session-id": "s1"},
              json={"model": "m", "input": "x"})
    first, second = fake.requests()
    assert first["stream"] is True and first["prompt_cache_key"] == "pck"
    assert first["include"] == [ENC] and first["usage"]["output_tokens"] == 20
    assert set(first["usage"]) >= {"input_tokens", "cached_tokens", "output_tokens",
                                   "cache_creation_tokens", "raw"}
    assert first["response_id"].startswith("resp_") and first["completed"]
    assert second["session_headers"] == {"session-id": "s1"}


def test_control_endpoints(fake: FakeUpstream, http: httpx2.Client) -> None:
    http.get("/anything")
    assert [e["path"] for e in http.get("/_fake/log").json()] == ["/anything"]
    assert http.post("/_fake/reset").status_code == 200 and fake.requests() == []
    first = respond(http, KEY_A, input="x").json()["id"]
    assert len(fake.requests(account="openai-a", api="responses")) == 1
    assert http.post("/_fake/reset?all=1").status_code == 200 and fake.requests() == []
    gone = respond(http, KEY_A, input="x", previous_response_id=first)
    assert gone.json()["error"]["code"] == "previous_response_not_found"
    http.post("/_fake/faults", json={"account": "openai-a", "kind": "500"})
    assert respond(http, KEY_A, input="x").status_code == 500
    http.post("/_fake/faults", json={"kind": "500", "count": 5})
    http.delete("/_fake/faults")
    assert respond(http, KEY_A, input="x").status_code == 200
    assert http.post("/_fake/faults", json={"kind": "nope"}).status_code == 400


# ---- faults ----


@pytest.mark.parametrize("kind, path, headers, status, code", [
    ("429", "/v1/responses", oa(KEY_A), 429, "rate_limit_exceeded"),
    ("429", "/v1/messages", ant(ANT_A), 429, "rate_limit_error"),
    ("quota", "/v1/chat/completions", oa(KEY_A), 429, "insufficient_quota"),
    ("quota", "/backend-api/codex/responses", CHATGPT, 429, "usage_limit_reached"),
    ("quota", "/v1/messages", ant(ANT_A), 429, "rate_limit_error"),
    ("401", "/v1/responses", oa(KEY_A), 401, "invalid_api_key"),
    ("401", "/v1/messages", ant(ANT_A), 401, "authentication_error"),
    ("500", "/v1/responses", oa(KEY_A), 500, "server_error"),
    ("500", "/v1/messages", ant(ANT_A), 500, "api_error"),
    ("529", "/v1/messages", ant(ANT_A), 529, "overloaded_error"),
])
def test_error_faults(fake: FakeUpstream, http: httpx2.Client, kind: str, path: str,
                      headers: dict[str, str], status: int, code: str) -> None:
    fake.add_fault(kind=kind, count=2, retry_after=3)
    body = {"model": "m", "input": "x", "messages": [], "max_tokens": 5}
    for _ in range(2):
        r = http.post(path, headers=headers, json=body)
        assert r.status_code == status
        err = r.json()["error"]
        assert code in (err.get("code"), err.get("type"))
        assert r.headers["retry-after"] == "3"
    assert http.post(path, headers=headers, json=body).status_code == 200
    assert [e["fault"] for e in fake.requests()] == [kind, kind, None]
    assert fake.requests()[0]["error_code"] == code


def test_rate_limit_headers(fake: FakeUpstream, http: httpx2.Client) -> None:
    assert int(respond(http, KEY_A, input="x").headers["x-ratelimit-remaining-requests"]) > 0
    fake.add_fault(kind="429", account="openai-a", retry_after=2)
    assert respond(http, KEY_A, input="x").headers["x-ratelimit-remaining-requests"] == "0"
    fake.add_fault(kind="429", account="anthropic-a")
    r = http.post("/v1/messages", headers=ant(ANT_A), json={"messages": []})
    assert r.headers["anthropic-ratelimit-requests-remaining"] == "0"


def test_fault_targets_one_account(fake: FakeUpstream, http: httpx2.Client) -> None:
    fake.add_fault(account="openai-b", kind="500", count=3)
    assert respond(http, KEY_A, input="x").status_code == 200
    assert respond(http, KEY_B, input="x").status_code == 500


def test_faults_are_not_taken_by_rejected_requests(fake: FakeUpstream,
                                                   http: httpx2.Client) -> None:
    fake.add_fault(kind="500")
    assert respond(http, "sk-wrong", input="x").status_code == 401
    assert respond(http, KEY_A, input="x").status_code == 500


def test_drop_fault_closes_connection(fake: FakeUpstream, http: httpx2.Client) -> None:
    fake.add_fault(kind="drop")
    with pytest.raises(httpx2.TransportError):
        respond(http, KEY_A, input="x")
    assert respond(http, KEY_A, input="x").status_code == 200
    assert fake.requests()[0]["fault"] == "drop" and fake.requests()[0]["status"] is None


def test_slow_fault_delays(fake: FakeUpstream, http: httpx2.Client) -> None:
    fake.add_fault(kind="slow", delay=0.3)
    start = time.monotonic()
    assert respond(http, KEY_A, input="x").status_code == 200
    assert time.monotonic() - start >= 0.3


def test_stall_fault_streams_first_event_then_waits(fake: FakeUpstream,
                                                    http: httpx2.Client) -> None:
    fake.add_fault(kind="stall", delay=30)
    first_line = threading.Event()
    lines: list[str] = []

    def consume() -> None:
        with http.stream("POST", "/v1/responses", headers=oa(KEY_A),
                         json={"model": "m", "input": "x", "stream": True}) as r:
            for line in r.iter_lines():
                lines.append(line)
                if line.startswith("data:"):
                    first_line.set()

    reader = threading.Thread(target=consume)
    reader.start()
    assert first_line.wait(5)
    time.sleep(0.2)
    assert sum(ln.startswith("data:") for ln in lines) == 1  # stalled after one event
    fake.release_stalls()
    reader.join(5)
    assert not reader.is_alive()
    data = [ln for ln in lines if ln.startswith("data:")]
    assert len(data) > 3 and "response.completed" in data[-1]


def test_stall_fault_on_a_plain_answer_just_delays(fake: FakeUpstream,
                                                   http: httpx2.Client) -> None:
    fake.add_fault(kind="stall")  # no delay: waits for release_stalls()
    threading.Timer(0.3, fake.release_stalls).start()
    start = time.monotonic()
    assert respond(http, KEY_A, input="x").status_code == 200
    assert 0.3 <= time.monotonic() - start < 5
    assert respond(http, KEY_A, input="x", stream=True).status_code == 200  # not stalled again


def test_unknown_fault_kind() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        FakeUpstream().add_fault(kind="nope")


# ---- scale and CLI ----


def test_many_concurrent_streams(fake: FakeUpstream) -> None:
    limits = httpx2.Limits(max_connections=150, max_keepalive_connections=150)
    with httpx2.Client(base_url=fake.url, trust_env=False, timeout=20, limits=limits) as c:
        def one(i: int) -> int:
            with c.stream("POST", "/v1/chat/completions", headers=oa(KEY_A), json={
                    "model": "m", "stream": True,
                    "messages": [{"role": "user", "content": str(i)}]}) as r:
                time.sleep(0.2)  # hold every stream open at once
                text = r.read().decode()
            return r.status_code if text.rstrip().endswith("[DONE]") else -1

        with ThreadPoolExecutor(120) as pool:
            assert set(pool.map(one, range(120))) == {200}


def test_cli_runs_in_foreground() -> None:
    port = find_free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fakeapi", "--port", str(port),
                             "--key", "sk-x=acct-x"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and "listening" in proc.stdout.readline()
        r = httpx2.get(f"http://127.0.0.1:{port}/v1/models", headers=oa("sk-x"),
                       trust_env=False)
        assert r.status_code == 200 and r.json()["object"] == "list"
    finally:
        proc.terminate()
        proc.wait(5)
