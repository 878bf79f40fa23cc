"""addons/route.py: the request hook on mitmproxy test flows — credentials, pins, body edits,
what passes untouched, and the provider-shaped refusal."""

import json

import zstandard

from tests.helpers import ACCOUNTS, configured, flow


def test_rewrites_credentials_and_pins(addon_ctx):
    addon, _, _ = addon_ctx
    f1 = flow(body={"model": "gpt-5", "input": "hi"}, headers=[("session-id", "conv-1")])
    addon.route.request(f1)
    assert f1.request.headers["authorization"] in ("Bearer sk-acct-oa", "Bearer sk-acct-ob")
    meta = f1.metadata["stickyroute"]
    assert meta["affinity"] == "new" and meta["session_source"] == "header:session-id"
    f2 = flow(body={"model": "gpt-5", "input": "hi"}, headers=[("session-id", "conv-1")])
    addon.route.request(f2)
    assert f2.metadata["stickyroute"]["affinity"] == "hit"
    assert f2.request.headers["authorization"] == f1.request.headers["authorization"]
    assert "sk-acct" not in f2.comment and f"-> {meta['account']} |" in f2.comment


def test_other_hosts_and_plain_http_untouched(addon_ctx):
    addon, _, _ = addon_ctx
    for f in (flow(host="example.com"), flow(scheme="http")):
        before = f.request.copy()
        addon.route.request(f)
        assert f.request.headers == before.headers and f.request.raw_content == before.raw_content
        assert "stickyroute" not in f.metadata


def test_anthropic_body_never_rewritten(addon_ctx):
    addon, _, _ = addon_ctx
    raw = b'{"model":"claude","messages":[{"role":"user","content":"x"}],"metadata":{"user_id":"u"}}'
    f = flow(host="api.anthropic.com", path="/v1/messages?beta=true", raw=raw,
             headers=[("x-api-key", "client")])
    addon.route.request(f)
    assert f.request.raw_content == raw
    assert f.request.headers["x-api-key"] == "sk-ant-acct"
    assert "authorization" not in f.request.headers


def test_injects_cache_key_into_zstd_body(addon_ctx):
    addon, _, _ = addon_ctx
    body = {"model": "gpt-5", "input": [{"role": "user", "content": "hello"}],
            "reasoning": {"effort": "low"}, "store": False}
    f = flow(raw=zstandard.ZstdCompressor().compress(json.dumps(body).encode()),
             headers=[("content-encoding", "zstd")])
    addon.route.request(f)
    assert f.request.headers["content-encoding"] == "zstd"
    sent = json.loads(zstandard.ZstdDecompressor().decompress(f.request.raw_content,
                                                               max_output_size=1 << 20))
    assert sent["prompt_cache_key"].startswith("sr-")
    assert sent["include"] == ["reasoning.encrypted_content"]
    assert f.metadata["stickyroute"]["injected"] == ["include", "prompt_cache_key"]


def test_cache_key_is_the_same_after_a_restart(accounts_file):
    keys = []
    for _ in range(2):
        with configured(accounts_file) as (addon, _):
            f = flow(body={"model": "m", "instructions": "sys", "input": "first"})
            addon.route.request(f)
            keys.append(json.loads(f.request.content)["prompt_cache_key"])
    assert keys[0] == keys[1]


def test_present_cache_key_and_non_json_untouched(addon_ctx):
    addon, _, _ = addon_ctx
    for raw in (b'{"prompt_cache_key":"mine","input":"x"}', b"not json at all", b"[1,2]",
                b"\xff\xfe\x00"):
        f = flow(raw=raw)
        addon.route.request(f)
        assert f.request.raw_content == raw
        assert f.request.headers["authorization"].startswith("Bearer sk-acct-")


def test_lying_content_encoding_passes_through(addon_ctx):
    addon, _, _ = addon_ctx
    f = flow(raw=b'{"input":"x"}', headers=[("content-encoding", "zstd")])
    addon.route.request(f)
    assert f.request.raw_content == b'{"input":"x"}'


def test_all_accounts_disabled_answers_503(addon_ctx):
    addon, _, _ = addon_ctx
    f = flow(host="chatgpt.com", path="/backend-api/codex/responses", body={"input": "x"})
    addon.route.request(f)
    assert f.response.status_code == 503
    err = json.loads(f.response.content)["error"]
    assert err["code"] == "no_account_available" and "openai" not in err["message"]
    assert "tok" not in f.response.text


def test_sticky_disabled_routes_without_pins(addon_ctx):
    addon, tctx, _ = addon_ctx
    tctx.configure(addon.options, sticky_enabled=False, sticky_strategy="round-robin")
    seen = set()
    for _ in range(4):
        f = flow(body={"input": "x"}, headers=[("session-id", "same")])
        addon.route.request(f)
        seen.add(f.request.headers["authorization"])
        assert f.metadata["stickyroute"]["affinity"] == "unpinned"
    assert len(seen) == 2 and len(addon.state.pins) == 0


def test_soft_pin_moves_when_account_disappears(addon_ctx, accounts_file):
    addon, _, _ = addon_ctx
    f = flow(body={"input": "x"}, headers=[("session-id", "s")])
    addon.route.request(f)
    first = f.metadata["stickyroute"]["account"]
    accounts_file.write_text(ACCOUNTS.replace(f"alias: {first}\n    provider: openai",
                                              f"alias: {first}\n    provider: openai\n"
                                              "    enabled: false") + "\n")
    assert addon.options.reload_accounts_if_changed()
    f2 = flow(body={"input": "x"}, headers=[("session-id", "s")])
    addon.route.request(f2)
    meta = f2.metadata["stickyroute"]
    assert meta["affinity"] == "moved" and meta["moved_from"] == first
    assert meta["account"] != first and f2.marked


def test_ledger_counts_requests_by_affinity(addon_ctx):
    addon, _, _ = addon_ctx
    for _ in range(3):
        f = flow(body={"input": "x"}, headers=[("session-id", "s")])
        addon.route.request(f)
    alias = f.metadata["stickyroute"]["account"]
    assert addon.state.ledger[alias].requests == 3
    assert addon.state.ledger[alias].affinity == {"new": 1, "hit": 2}
