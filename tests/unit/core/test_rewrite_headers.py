"""set_credentials on mitmproxy's Headers (one pass over the raw fields) gives the fields that
mitmproxy's own del and set calls give."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mitmproxy.http import Headers

from stickyroute.core import rewrite


def reference(h: Headers, credentials: list[tuple[str, str]]) -> tuple[tuple[bytes, bytes], ...]:
    """What set_credentials did through Headers' mapping methods."""
    h = Headers(h.fields)
    present = {name.lower() for name in h}
    for name in rewrite.CLIENT_CREDENTIALS:
        if name in present:
            del h[name]
    for name, value in credentials:
        h[name] = value
    return h.fields


NAMES = ["Authorization", "authorization", "X-Api-Key", "Cookie", "anthropic-beta",
         "Anthropic-Beta", "accept", "session-id", "ChatGPT-Account-Id", "x-sticky-session"]


@pytest.mark.parametrize("credentials", [
    [("authorization", "Bearer acct")],
    [("x-api-key", "sk-ant"), ("anthropic-beta", "oauth-2025-04-20")],
    [("authorization", "Bearer t"), ("chatgpt-account-id", "id")],
])
def test_as_mitmproxys_del_and_set_leave_them(credentials: list[tuple[str, str]]) -> None:
    h = Headers([(b"Accept", b"*/*"), (b"Authorization", b"Bearer client"),
                 (b"Anthropic-Beta", b"client-beta"), (b"anthropic-beta", b"second"),
                 (b"Cookie", b"c=1"), (b"session-id", b"t")])
    expected = reference(h, credentials)
    rewrite.set_credentials(h, credentials)
    assert h.fields == expected


@given(st.lists(st.tuples(st.sampled_from(NAMES), st.text("abc é", max_size=3)), max_size=8),
       st.lists(st.tuples(st.sampled_from(NAMES), st.text("xyz", min_size=1, max_size=3)),
                max_size=3, unique_by=lambda c: c[0].lower()))
def test_any_headers_and_credentials(fields: list[tuple[str, str]],
                                     credentials: list[tuple[str, str]]) -> None:
    h = Headers([(n.encode(), v.encode()) for n, v in fields])
    expected = reference(h, credentials)
    rewrite.set_credentials(h, credentials)
    assert h.fields == expected
