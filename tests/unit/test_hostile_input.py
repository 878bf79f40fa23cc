"""Property tests: identity extraction and body injection over arbitrary JSON and bytes.

Never raises; a body the addon does not understand (not a UTF-8 JSON object, unknown or lying
encoding, over the cap) leaves the proxy byte for byte as it came in.
"""

from __future__ import annotations

import gzip
import json
import math

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy.test import taddons, tflow, tutils

from stickyroute.core import bodycap, identify, rewrite
from tests import helpers

SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

# Any JSON value, including lone surrogates, NaN/inf and big numbers json.loads can produce.
scalars = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.text(alphabet=st.characters(codec=None), max_size=30))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner,
                                                                max_size=5),
    max_leaves=12,
)
# Keys the code looks at, so the values behind them get exercised often.
INTERESTING = ["prompt_cache_key", "metadata", "conversation", "model", "instructions", "system",
               "messages", "input", "reasoning", "store", "include", "previous_response_id"]
json_objects = st.dictionaries(st.sampled_from(INTERESTING) | st.text(max_size=10), json_values,
                               max_size=8)
header_text = st.text(alphabet=st.characters(codec="latin-1"), max_size=40)
headers = st.dictionaries(st.sampled_from(["authorization", "x-api-key", "session-id",
                                           "x-sticky-session", "conversation_id", "x-custom"]),
                          header_text, max_size=4)
# Claude Code's metadata.user_id: anything, JSON that breaks off, and the two real forms with
# session ids of any length (the legacy form's id is whatever follows `_session_`).
user_ids = (st.text() | st.builds(lambda s: "{" + s, st.text())
            | st.builds(lambda n: '{"session_id":' + "[" * n, st.integers(0, 5000))
            | st.builds(lambda s: json.dumps({"session_id": s}), st.text(max_size=300))
            | st.builds(lambda n, c: f"user_ab12_account_0f0e_session_{c * n}",
                        st.integers(1, 2000), st.sampled_from("0a-")))
MAX_ID = 256  # the longest client id a session key takes (identify's bound on every source)


@SETTINGS
@given(provider=st.sampled_from(["openai", "anthropic", "chatgpt"]), hdrs=headers,
       body=json_objects, user_id=user_ids)
def test_identify_never_raises(provider, hdrs, body, user_id):
    body.setdefault("metadata", {"user_id": user_id})
    sid = identify.identify(provider, hdrs, body, ["x-custom"])
    if sid is not None:
        parts = identify.split_key(sid.key)
        assert parts is not None and parts.provider == provider
        # namespaced by a hash of the client's credential, never the credential itself
        assert parts.client == identify.client_identity(hdrs)
        assert parts.value.strip() and len(parts.value) <= MAX_ID, sid
        if sid.source.startswith("header:"):
            assert parts.value == hdrs[sid.source.removeprefix("header:")].strip()
    found = identify.claude_code_session(user_id)
    if found is not None:  # the id the user_id holds, as it holds it, and bounded
        assert found.strip() and len(found) <= MAX_ID, found
        if user_id.startswith("{"):
            assert json.loads(user_id)["session_id"] == found
        else:
            assert user_id.endswith("_session_" + found)


@SETTINGS
@given(raw=st.binary(max_size=2000)
       | json_values.map(lambda v: json.dumps(v).encode())  # JSON, in UTF-8
       | json_objects.map(lambda v: json.dumps(v).encode("utf-16")))  # JSON, not in UTF-8
def test_parse_object_never_raises_on_bytes(raw):
    try:
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        value = None
    # exactly the JSON object the bytes hold in UTF-8; None for anything else (UTF-16 too:
    # splicing UTF-8 into it would corrupt the body)
    assert _same(rewrite.parse_object(raw), value if isinstance(value, dict) else None)


def _same(a, b) -> bool:
    """JSON equality where NaN equals NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@SETTINGS
@given(body=json_objects, ascii_only=st.booleans(), cache_key=st.none() | st.just("sr-1"),
       include=st.booleans())
def test_add_fields_keeps_every_field_and_adds_only_ours(body, ascii_only, cache_key, include):
    try:
        raw = json.dumps(body, ensure_ascii=ascii_only).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate cannot be UTF-8; such bodies never parse
        raw = json.dumps(body).encode()
    parsed = rewrite.parse_object(raw)
    assert parsed is not None
    add = rewrite.wanted_fields(parsed, cache_key, include)
    if not add:
        return
    out = json.loads(rewrite.add_fields(raw, parsed, add))
    assert _same(out, {**parsed, **add})


# ---- through the glue, on mitmproxy flows ------------------------------------------------------

KEY = "sk-acct-oa"
ACCOUNTS = f"accounts:\n  - alias: oa\n    provider: openai\n    api_key: {KEY}\n"
encodings = st.sampled_from(["", "gzip", "zstd", "br", "deflate", "identity", "x-weird",
                             "gzip, zstd"])


@pytest.fixture(scope="module")
def addons(tmp_path_factory):
    """One configured Guard + StickyRoute for the module (a context per example is slow)."""
    sticky = helpers.addons()
    guard = sticky.guard
    p = tmp_path_factory.mktemp("acc") / "accounts.yaml"
    p.write_text(ACCOUNTS)
    p.chmod(0o600)
    with taddons.context(*sticky) as tctx:
        tctx.configure(sticky.options, sticky_accounts=str(p))
        yield guard, sticky


def _run(addons, raw: bytes, encoding: str, path: str = "/v1/responses",
         host: str = "api.openai.com"):
    """One request through the guard and routing, then the guard's hook once it was sent."""
    guard, sticky = addons
    req = tutils.treq(host=host, port=443, scheme=b"https", path=path.encode(),
                      method=b"POST", content=b"")
    req.headers.clear()
    if encoding:
        req.headers["content-encoding"] = encoding
    req.raw_content = raw
    f = tflow.tflow(req=req)
    guard.request(f)
    sticky.route.request(f)
    guard.response(f)
    return f


def _credential_kept_out(f) -> None:
    """The account's key went upstream, and is nowhere in what the flow keeps."""
    assert f.request.headers["authorization"] == "Bearer [stickyroute:oa]"  # masked once sent
    assert KEY not in f.comment and KEY not in json.dumps(f.metadata, default=repr)


@SETTINGS
@given(raw=st.binary(max_size=3000), encoding=encodings)
def test_bytes_the_addon_does_not_understand_pass_byte_equal(addons, raw, encoding):
    f = _run(addons, raw, encoding)
    assert f.metadata["stickyroute"]["account"] == "oa"  # routed all the same, by headers
    if rewrite.parse_object(raw) is None or encoding not in ("", "identity"):
        # not a JSON object as it stands (random bytes are never valid gzip/zstd/br here)
        assert f.request.raw_content == raw
        assert f.request.headers.get("content-encoding", "") == encoding
    _credential_kept_out(f)


@SETTINGS
@given(raw=st.binary(max_size=3000) | json_objects.map(lambda b: json.dumps(b).encode()),
       encoding=encodings, host=st.sampled_from(["example.com", "api.openai.com.evil.test"]))
def test_bodies_to_other_hosts_pass_byte_equal(addons, raw, encoding, host):
    f = _run(addons, raw, encoding, host=host)
    assert f.request.raw_content == raw  # not even a JSON object is touched
    assert "authorization" not in f.request.headers  # no account's key, masked or not
    assert "stickyroute" not in f.metadata and not f.comment


@SETTINGS
@given(body=json_objects, encoding=st.sampled_from(["", "gzip", "zstd"]))
def test_json_objects_in_any_encoding_are_routed_and_stay_valid(addons, body, encoding):
    try:
        plain = json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        plain = json.dumps(body).encode()
    raw = {"": lambda b: b, "gzip": gzip.compress,
           "zstd": zstandard.ZstdCompressor().compress}[encoding](plain)
    f = _run(addons, raw, encoding)
    meta = f.metadata["stickyroute"]
    assert meta["account"] == "oa"
    _credential_kept_out(f)
    injected = set(meta["injected"])
    assert injected <= {"prompt_cache_key", "include"}
    if not injected:
        assert f.request.raw_content == raw
        return
    assert f.request.headers.get("content-encoding", "") == encoding  # sent as it came
    sent, original = json.loads(f.request.get_content()), json.loads(plain)  # still JSON
    assert _same({k: v for k, v in sent.items() if k not in injected},
                 {k: v for k, v in original.items() if k not in injected})  # all else kept
    if "prompt_cache_key" in injected:  # ours only where the client had none
        assert "prompt_cache_key" not in original
        assert sent["prompt_cache_key"] == rewrite.cache_key_for(meta["session_key"])
    if "include" in injected:  # reasoning asked for, nothing stored: the client's list + ours
        assert original.get("store") is False and original.get("reasoning") is not None
        assert sent["include"] == [*(original.get("include") or []), rewrite.ENCRYPTED_REASONING]


def test_bodies_over_the_cap_pass_untouched(addons, monkeypatch):
    monkeypatch.setattr(bodycap, "MAX_BODY", 1000)
    small = json.dumps({"model": "m", "input": "x" * 900}).encode()
    assert "prompt_cache_key" in _run(addons, small, "").request.text
    big = json.dumps({"model": "m", "input": "x" * 2000}).encode()
    for raw, enc in ((big, ""), (gzip.compress(big), "gzip"),
                     (zstandard.ZstdCompressor().compress(big), "zstd")):
        f = _run(addons, raw, enc)
        assert f.request.raw_content == raw and f.metadata["stickyroute"]["injected"] == []


def test_deeply_nested_and_lying_bodies(addons):
    for raw, enc in [(b'{"input":' + b"[" * 100_000 + b"]" * 100_000 + b"}", ""),
                     (b'{"metadata":{"user_id":"{' + b"[" * 50_000 + b'"}}', ""),
                     (b'{"model": "m", "input": "hi"}', "gzip"),  # says gzip, is not
                     (gzip.compress(b'{"model": "m"}'), ""),  # is gzip, says nothing
                     (b'\xff\xfe{\x00}\x00', ""), (b'{"a": "\xc3\x28"}', "")]:
        f = _run(addons, raw, enc)
        assert f.request.raw_content == raw, raw[:40]
