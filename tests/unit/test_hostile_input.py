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
user_ids = (st.text() | st.builds(lambda s: "{" + s, st.text())
            | st.builds(lambda n: '{"session_id":' + "[" * n, st.integers(0, 5000)))


@SETTINGS
@given(provider=st.sampled_from(["openai", "anthropic", "chatgpt"]), hdrs=headers,
       body=json_objects, user_id=user_ids)
def test_identify_never_raises(provider, hdrs, body, user_id):
    body.setdefault("metadata", {"user_id": user_id})
    sid = identify.identify(provider, hdrs, body, ["x-custom"])
    if sid is not None:
        assert sid.key.startswith(provider + "/") and len(sid.key) < 400
    assert identify.claude_code_session(user_id) is None or isinstance(
        identify.claude_code_session(user_id), str)


@SETTINGS
@given(raw=st.binary(max_size=2000))
def test_parse_object_never_raises_on_bytes(raw):
    parsed = rewrite.parse_object(raw)
    assert parsed is None or isinstance(parsed, dict)


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

ACCOUNTS = "accounts:\n  - alias: oa\n    provider: openai\n    api_key: sk-acct-oa\n"
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


def _run(addons, raw: bytes, encoding: str, path: str = "/v1/responses"):
    guard, sticky = addons
    req = tutils.treq(host="api.openai.com", port=443, scheme=b"https", path=path.encode(),
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


@SETTINGS
@given(raw=st.binary(max_size=3000), encoding=encodings)
def test_bytes_the_addon_does_not_understand_pass_byte_equal(addons, raw, encoding):
    f = _run(addons, raw, encoding)
    assert f.metadata["stickyroute"]["account"] == "oa"  # routed all the same, by headers
    if rewrite.parse_object(raw) is None or encoding not in ("", "identity"):
        # not a JSON object as it stands (random bytes are never valid gzip/zstd/br here)
        assert f.request.raw_content == raw


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
    if not meta["injected"]:
        assert f.request.raw_content == raw
    else:
        assert _same(json.loads(f.request.get_content()),
                     {**json.loads(plain), **{k: json.loads(f.request.get_content())[k]
                                              for k in meta["injected"]}})


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
