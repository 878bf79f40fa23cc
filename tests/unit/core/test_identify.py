import json

import pytest
from mitmproxy.http import Headers

from stickyroute.core.identify import claude_code_session, derived, identify


def H(**kw):
    return Headers(**{k.replace("_", "-") if k != "session_id" else k: v for k, v in kw.items()})


def test_override_header_wins():
    h = Headers([(b"x-sticky-session", b"mine"), (b"session-id", b"codex")])
    s = identify("openai", h, {"prompt_cache_key": "pck"})
    assert s.key.endswith("/mine") and s.source == "header:x-sticky-session"


@pytest.mark.parametrize("name", ["x-claude-code-session-id", "session-id", "session_id",
                                  "conversation_id", "x-session-id", "x-session-affinity",
                                  "x-opencode-session", "X-Claude-Code-Session-Id"])
def test_client_session_headers(name):
    h = Headers([(name.encode(), b"abc-123")])
    s = identify("anthropic", h, None)
    assert s.key.endswith("/abc-123") and s.source == f"header:{name.lower()}"


def test_extra_headers_option():
    h = Headers([(b"x-my-conv", b"c1")])
    assert identify("openai", h, None) is None
    assert identify("openai", h, None, extra_headers=["x-my-conv"]).source == "header:x-my-conv"


def test_codex_header_and_cache_key_give_the_same_session():
    uuid = "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
    by_header = identify("openai", Headers([(b"session-id", uuid.encode())]), {})
    by_body = identify("openai", Headers(), {"prompt_cache_key": uuid})
    assert by_header.key == by_body.key


def test_namespaced_by_provider_and_client_credential():
    body = {"prompt_cache_key": "same"}
    a = identify("openai", Headers(authorization="Bearer client-1"), body)
    b = identify("openai", Headers(authorization="Bearer client-2"), body)
    c = identify("chatgpt", Headers(authorization="Bearer client-1"), body)
    assert len({a.key, b.key, c.key}) == 3
    assert "client-1" not in a.key


@pytest.mark.parametrize("user_id, expected", [
    (json.dumps({"device_id": "d", "account_uuid": "a", "session_id": "s-json-1"}), "s-json-1"),
    ("user_abc123_account_0f0e_session_9b2c7c3e-1111-2222-3333-444455556666",
     "9b2c7c3e-1111-2222-3333-444455556666"),
    ("{not json", None),
    (json.dumps({"session_id": 5}), None),
    (json.dumps(["session_id"]), None),
    ("user_without_session", None),
    ("user_abc123_account_0f0e_session_" + "9" * 257, None),  # ids are at most 256 characters
    (None, None),
    (42, None),
])
def test_claude_code_metadata_user_id(user_id, expected):
    assert claude_code_session(user_id) == expected


def test_body_forms_in_order():
    assert identify("anthropic", Headers(), {"metadata": {"session_id": "m1"}}).source == \
        "body:metadata.session_id"
    assert identify("openai", Headers(), {"conversation": "conv_1"}).key.endswith("/conv_1")
    assert identify("openai", Headers(), {"conversation": {"id": "conv_2"}}).key.endswith("/conv_2")
    assert identify("openai", Headers(), {"prompt_cache_key": 7, "input": []}) is None


def claude_turn(n: int, billing: str):
    msgs = [{"role": "user", "content": [{"type": "text", "text": "fix the bug"}]}]
    for i in range(n):
        msgs += [{"role": "assistant", "content": f"answer {i}"},
                 {"role": "user", "content": [{"type": "text", "text": f"more {i}",
                                               "cache_control": {"type": "ephemeral"}}]}]
    return {"model": "claude-sonnet-4-5", "messages": msgs,
            "system": [{"type": "text", "text": f"x-anthropic-billing-header: cch={billing};"},
                       {"type": "text", "text": "You are Claude Code.",
                        "cache_control": {"type": "ephemeral"}}]}


def test_derived_key_is_stable_across_turns_and_billing_lines():
    keys = {derived("anthropic", claude_turn(n, billing=str(n * 7))) for n in range(4)}
    assert len(keys) == 1


def test_derived_key_differs_by_first_message_model_and_system():
    base = {"model": "gpt-5", "instructions": "be brief", "input": "hello"}
    k = derived("openai", base)
    assert k != derived("openai", {**base, "input": "bye"})
    assert k != derived("openai", {**base, "model": "gpt-5-mini"})
    assert k != derived("openai", {**base, "instructions": "be long"})
    assert k == derived("openai", {**base, "input": [{"role": "user", "content": "hello"}]})
    assert derived("openai", {"model": "m", "input": []}) is None


def test_no_identity_means_unpinned():
    assert identify("openai", Headers(), None) is None
    assert identify("openai", Headers(), {"model": "m"}) is None


@pytest.mark.parametrize("body", [
    {"messages": "nope"}, {"input": [1, None, "x", {"role": 3}]}, {"metadata": []},
    {"system": {"a": 1}, "messages": [{"role": "user", "content": {"x": 1}}]},
])
def test_odd_bodies_never_raise(body):
    # no usable id and no user text to derive one from: the request goes unpinned
    assert identify("openai", Headers(), body) is None
    assert derived("openai", body) is None
    # a session header still names the conversation, whatever the body holds
    named = identify("openai", Headers([(b"session-id", b"s-1")]), body)
    assert named is not None and named.key.endswith("/s-1") and named.source == "header:session-id"


# ---- a logged-in CLI keeps its namespace when it refreshes its own login ----------------------

def _jwt(claims: dict) -> str:
    import base64

    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


def test_a_chatgpt_login_is_known_by_its_user_across_token_refreshes():
    from stickyroute.core.identify import client_identity

    old = _jwt({"iss": "https://auth.openai.com", "sub": "user-1", "exp": 1})
    new = _jwt({"iss": "https://auth.openai.com", "sub": "user-1", "exp": 2})
    other = _jwt({"iss": "https://auth.openai.com", "sub": "user-2", "exp": 2})
    ids = [client_identity({"authorization": f"Bearer {t}"}) for t in (old, new, other)]
    assert ids[0] == ids[1] != ids[2]


def test_claude_logins_share_one_namespace_and_api_keys_keep_their_own():
    from stickyroute.core.identify import client_identity

    claude = {client_identity({"authorization": f"Bearer sk-ant-oat01-{n}"}) for n in "abc"}
    assert len(claude) == 1
    keys = {client_identity({"x-api-key": k}) for k in ("sk-ant-api03-a", "sk-ant-api03-b")}
    assert len(keys) == 2 and not keys & claude
    # a JWT-looking value without a subject, or not a JWT at all, is itself
    assert client_identity({"authorization": "Bearer a.b.c"}) != client_identity(
        {"authorization": "Bearer a.b.d"})
