"""The fake upstream's WebSocket transport for the Responses API (no proxy in between)."""

import json

from websockets.sync.client import connect

from fakeapi import FakeUpstream


def turn(ws, frame):
    ws.send(json.dumps({"type": "response.create", **frame}))
    while True:
        event = json.loads(ws.recv(timeout=10))
        if event["type"] in ("response.completed", "error"):
            return event


def test_turns_share_the_account_state(fake_upstream: FakeUpstream) -> None:
    url = f"ws://127.0.0.1:{fake_upstream.port}/v1/responses"
    with connect(url, proxy=None,
                 additional_headers={"authorization": "Bearer sk-test-openai-a"}) as ws:
        first = turn(ws, {"model": "gpt-fake", "input": "hi"})
        second = turn(ws, {"model": "gpt-fake", "input": "more",
                           "previous_response_id": first["response"]["id"]})
    with connect(url, proxy=None,
                 additional_headers={"authorization": "Bearer sk-test-openai-b"}) as ws:
        other = turn(ws, {"model": "gpt-fake", "input": "x",
                          "previous_response_id": first["response"]["id"]})
    assert second["type"] == "response.completed"
    assert other["type"] == "error" and other["error"]["code"] == "previous_response_not_found"
    log = fake_upstream.requests()
    assert [(e["account"], e["ws"], e["status"]) for e in log] == [
        ("openai-a", True, 200), ("openai-a", True, 200), ("openai-b", True, 400)]
    assert log[0]["usage"]["output_tokens"] == 20


def test_handshake_without_credential_is_refused(fake_upstream: FakeUpstream) -> None:
    import pytest
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus, match="401"):
        connect(f"ws://127.0.0.1:{fake_upstream.port}/v1/responses", proxy=None)


def test_prewarm_warms_the_cache_and_chains_on_its_connection_only(
        fake_upstream: FakeUpstream) -> None:
    url = f"ws://127.0.0.1:{fake_upstream.port}/v1/responses"
    system = "Be brief and exact. " * 400  # well past the cache's minimum prefix
    headers = {"authorization": "Bearer sk-test-openai-a"}
    with connect(url, proxy=None, additional_headers=headers) as ws:
        warm = turn(ws, {"model": "gpt-fake", "instructions": system, "input": [],
                         "store": False, "generate": False})
        first = turn(ws, {"model": "gpt-fake", "input": "hi", "store": False,
                          "previous_response_id": warm["response"]["id"]})
    with connect(url, proxy=None, additional_headers=headers) as ws:
        elsewhere = turn(ws, {"model": "gpt-fake", "input": "again", "store": False,
                              "previous_response_id": first["response"]["id"]})
    assert warm["response"]["output"] == [] and warm["response"]["usage"] is None
    assert first["response"]["output"] and first["response"]["usage"]["output_tokens"] == 20
    assert first["response"]["usage"]["input_tokens_details"]["cached_tokens"] > 0
    # store: false keeps a response on its connection: another connection cannot chain from it
    assert elsewhere["type"] == "error"
    assert elsewhere["error"]["code"] == "previous_response_not_found"
    warm_entry, first_entry, _ = fake_upstream.requests()
    assert warm_entry["usage"] is None and warm_entry["body"]["generate"] is False
    assert first_entry["usage"]["cached_tokens"] == first["response"]["usage"][
        "input_tokens_details"]["cached_tokens"]


def test_a_login_access_token_opens_the_chatgpt_websocket_until_it_expires(
        fake_upstream: FakeUpstream) -> None:
    import pytest
    from websockets.exceptions import InvalidStatus

    with fake_upstream.lock:
        issued = fake_upstream.oauth.create("sub-ws", "chatgpt", login="ws-login")
    url = f"ws://127.0.0.1:{fake_upstream.port}/backend-api/codex/responses"
    headers = {"authorization": f"Bearer {issued.access_token}",
               "chatgpt-account-id": issued.chatgpt_account_id}
    with connect(url, proxy=None, additional_headers=headers) as ws:
        done = turn(ws, {"model": "gpt-fake", "input": "hi"})
    assert done["type"] == "response.completed"
    assert {e["account"] for e in fake_upstream.requests()} == {"sub-ws"}
    with fake_upstream.lock:
        fake_upstream.oauth.expire("ws-login")
    with pytest.raises(InvalidStatus, match="401"):
        connect(url, proxy=None, additional_headers=headers)
    assert fake_upstream.requests()[-1]["error_code"] == "token_expired"
