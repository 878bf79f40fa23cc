import json

from mitmproxy.http import Headers

from stickyroute.core import rewrite


def test_set_credentials_drops_every_client_credential():
    h = Headers(authorization="Bearer client", x_api_key="client-key", cookie="c=1",
                chatgpt_account_id="client-acct", x_sticky_session="s", accept="*/*")
    h["OpenAI-Project"] = "client-proj"
    rewrite.set_credentials(h, [("authorization", "Bearer acct"), ("openai-project", "p")])
    assert dict(h) == {"accept": "*/*", "authorization": "Bearer acct", "openai-project": "p"}


def test_cache_key_is_stable_and_opaque():
    k = rewrite.cache_key_for("openai/abc/d-123")
    assert k == rewrite.cache_key_for("openai/abc/d-123") and k.startswith("sr-")
    assert "abc" not in k


def test_wanted_fields():
    reasoning = {"reasoning": {"effort": "low"}, "store": False}
    assert rewrite.wanted_fields({"prompt_cache_key": "x"}, "k", True) == {}
    assert rewrite.wanted_fields({}, "k", True) == {"prompt_cache_key": "k"}
    assert rewrite.wanted_fields({}, None, True) == {}
    assert rewrite.wanted_fields(reasoning, None, True) == {
        "include": ["reasoning.encrypted_content"]}
    assert rewrite.wanted_fields({**reasoning, "include": ["x"]}, None, True) == {
        "include": ["x", "reasoning.encrypted_content"]}
    assert rewrite.wanted_fields(
        {**reasoning, "include": ["reasoning.encrypted_content"]}, None, True) == {}
    assert rewrite.wanted_fields({**reasoning, "store": True}, None, True) == {}
    assert rewrite.wanted_fields(reasoning, None, False) == {}


def test_add_fields_splices_and_keeps_other_bytes():
    raw = b'  {"model" : "gpt-5",\n "input": "h\\u00e9"}'
    body = json.loads(raw)
    out = rewrite.add_fields(raw, body, {"prompt_cache_key": "k"})
    assert out.endswith(b'"model" : "gpt-5",\n "input": "h\\u00e9"}')
    assert json.loads(out) == {**body, "prompt_cache_key": "k"}
    assert json.loads(rewrite.add_fields(b"{}", {}, {"a": 1})) == {"a": 1}


def test_add_fields_merges_existing_include():
    raw = b'{"include":["x"],"store":false}'
    out = rewrite.add_fields(raw, json.loads(raw), {"include": ["x", "y"]})
    assert json.loads(out) == {"include": ["x", "y"], "store": False}


def test_parse_object_only_objects():
    assert rewrite.parse_object(b'{"a":1}') == {"a": 1}
    for raw in (b"[1]", b"not json", b'{"a":', b"\xff\xfe", b"", b'"s"'):
        assert rewrite.parse_object(raw) is None
