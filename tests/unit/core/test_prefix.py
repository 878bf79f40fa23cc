import pytest

from stickyroute.core import prefix as pm
from stickyroute.core.prefix import Prefix, WarmPrefixes, cache_ttl, prefix_of

NOW = 1_700_000_000.0
SYSTEM = "You are a careful coding agent. " * 200  # ~6 KB: long enough to be cached
TOOLS = [{"type": "function", "name": "shell", "parameters": {"type": "object"}}]
CC = {"type": "ephemeral"}


def responses(first_user: str, **over):
    return {"model": "gpt-5-codex", "instructions": SYSTEM, "tools": TOOLS,
            "input": [{"role": "user", "content": first_user}], **over}


def messages(first_user: str, system=None, **over):
    system = system if system is not None else [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1; cch=" + first_user},
        {"type": "text", "text": SYSTEM, "cache_control": CC}]
    return {"model": "claude-fake", "system": system, "tools": TOOLS,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": first_user, "cache_control": CC}]}], **over}


# ---- the prefix of a request ----------------------------------------------------------
def test_openai_conversations_sharing_instructions_and_tools_share_a_prefix():
    a, b = prefix_of("openai", responses("task one")), prefix_of("openai", responses("task two"))
    assert a is not None and a == b and a.ttl == pm.OPENAI_TTL
    assert prefix_of("openai", responses("x", tools=[])) != a
    assert prefix_of("openai", responses("x", model="gpt-other")) != a
    assert prefix_of("chatgpt", responses("x")) != a  # another provider, another cache


def test_openai_leading_system_messages_belong_to_the_prefix():
    chat = {"model": "gpt-x", "messages": [{"role": "system", "content": SYSTEM},
                                           {"role": "user", "content": "hi"}]}
    other = {**chat, "messages": [{"role": "system", "content": SYSTEM + "!"},
                                  {"role": "user", "content": "hi"}]}
    p = prefix_of("openai", chat)
    assert p is not None and p != prefix_of("openai", other)
    later = {**chat, "messages": [*chat["messages"], {"role": "system", "content": "late"}]}
    assert prefix_of("openai", later) == p  # only the LEADING system messages count


def test_anthropic_prefix_ignores_the_billing_line_and_the_markers():
    a = prefix_of("anthropic", messages("one"))
    b = prefix_of("anthropic", messages("two"))
    assert a is not None and a == b and a.ttl == pm.ANTHROPIC_TTL
    moved = messages("one", system=[{"type": "text", "text": SYSTEM}])  # marker in messages only
    assert prefix_of("anthropic", moved) == a


def test_anthropic_prefix_ends_at_the_last_breakpoint_before_the_messages():
    tail = {"type": "text", "text": "today's date and git status " * 50}
    with_tail = messages("one", system=[{"type": "text", "text": SYSTEM, "cache_control": CC},
                                        tail])
    assert prefix_of("anthropic", with_tail) == prefix_of("anthropic", messages("one"))
    tools_only = messages("one", system=[{"type": "text", "text": SYSTEM}],
                          tools=[{**TOOLS[0], "cache_control": CC}],
                          messages=[{"role": "user", "content": "hi"}])
    assert prefix_of("anthropic", tools_only) is None  # the tools alone are too short
    tools_only["tools"] = [{**TOOLS[0], "description": SYSTEM, "cache_control": CC}]
    assert prefix_of("anthropic", tools_only) is not None


def test_nothing_cached_means_no_prefix():
    plain = {"model": "claude-fake", "system": SYSTEM,
             "messages": [{"role": "user", "content": "hi"}]}
    assert prefix_of("anthropic", plain) is None  # no cache_control anywhere
    assert prefix_of("openai", responses("x", instructions="short", tools=[])) is None


@pytest.mark.parametrize("body", [
    None, [], "text", {}, {"instructions": 5, "tools": "x", "input": "y"},
    {"system": [1, None, "x"], "tools": {"a": 1}, "messages": [None, {"content": 7}]},
    {"input": [{"role": "system", "content": {"deep": [float("nan")]}}]},
])
@pytest.mark.parametrize("provider", ["openai", "anthropic", "chatgpt"])
def test_odd_bodies_never_raise(provider, body):
    prefix_of(provider, body)
    cache_ttl(provider, body)


# ---- how long the provider keeps it ----------------------------------------------------
def test_cache_lifetimes():
    assert cache_ttl("openai", responses("x"), 600) == 600
    assert cache_ttl("openai", responses("x", prompt_cache_retention="24h"), 600) == 86400
    assert cache_ttl("chatgpt", None, 900) == 900
    assert cache_ttl("anthropic", messages("x")) == 300
    long_cc = {"type": "ephemeral", "ttl": "1h"}
    every_1h = messages("x", system=[{"type": "text", "text": SYSTEM, "cache_control": long_cc}])
    every_1h["messages"][0]["content"][0]["cache_control"] = long_cc
    assert cache_ttl("anthropic", every_1h) == 3600
    every_1h["messages"][0]["content"][0]["cache_control"] = CC  # one 5-minute marker
    assert cache_ttl("anthropic", every_1h) == 300
    assert cache_ttl("anthropic", None) == 300


# ---- the table -----------------------------------------------------------------------
P = Prefix("p1", 300.0)
Q = Prefix("p2", 3600.0)


def test_warm_where_served_until_the_cache_lifetime_ends():
    w = WarmPrefixes()
    w.touch("a", P, NOW)
    w.touch("b", P, NOW + 100)
    assert w.warm("p1", NOW + 200) == {"a": NOW + 300, "b": NOW + 400}
    assert w.warm("p1", NOW + 300) == {"b": NOW + 400}
    assert w.warm("nope", NOW) == {}
    w.touch("a", P, NOW + 299)  # a use refreshes the provider's cache
    assert w.warm("p1", NOW + 500) == {"a": NOW + 599}


def test_expire_pops_from_the_front_and_counts_follow():
    w = WarmPrefixes()
    w.touch("a", P, NOW)
    w.touch("a", Q, NOW)
    w.touch("b", P, NOW + 10)
    assert (w.count("a"), w.count("b")) == (2, 1)
    assert w.expire(NOW + 305) == 1  # (p1, a); (p2, a) is live and stops the sweep
    assert (w.count("a"), len(w)) == (1, 2)
    assert w.expire(NOW + 10_000, limit=1) == 1 and w.expire(NOW + 10_000) == 1
    assert len(w) == 0 and w.count("a") == 0 and w.warm("p1", NOW) == {}


def test_memory_is_bounded_least_recently_used_first():
    w = WarmPrefixes(max_entries=3)
    for i in range(3):
        w.touch("a", Prefix(f"k{i}", 300), NOW + i)
    w.touch("a", Prefix("k0", 300), NOW + 5)  # used again: now the newest
    w.touch("b", Prefix("k9", 300), NOW + 6)
    assert len(w) == 3 and w.warm("k1", NOW + 6) == {}
    assert set(w.warm("k0", NOW + 6)) == {"a"} and w.count("a") == 2


def test_forget_accounts_gone_from_the_file():
    w = WarmPrefixes()
    w.touch("a", P, NOW)
    w.touch("b", P, NOW)
    w.forget(["b"])
    assert w.warm("p1", NOW) == {"b": NOW + 300} and w.count("a") == 0


def test_a_new_conversation_placed_by_prefix_has_its_body_read_once():
    from stickyroute.core.peek import body_needed

    raw = b'{"model":"claude-fake","system":"...","messages":[]}'
    common = {"identify_from_body": False, "responses": False, "inject_cache_key": True,
              "inject_include": True}
    assert not body_needed(raw, **common)  # a header named the session: the body stays raw
    assert body_needed(raw, **common, place_new=True)  # ... unless it starts a conversation
