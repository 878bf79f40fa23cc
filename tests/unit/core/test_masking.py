"""drop_masked and mask_headers on mitmproxy's own Headers (one pass over the raw fields)
give what Headers' own methods give, and work on a plain dict."""

from hypothesis import given
from hypothesis import strategies as st
from mitmproxy import http

from stickyroute.core.masking import MARK, drop_masked, mask_headers, masked


def test_masked_fields_are_dropped_from_mitmproxy_headers() -> None:
    h = http.Headers([(b"Authorization", masked("acct-0", "Bearer sk-x").encode()),
                      (b"X-Api-Key", b"[stickyroute:acct-1]"), (b"session-id", b"t")])
    assert drop_masked(h) == ["Authorization", "X-Api-Key"]
    assert h.fields == ((b"session-id", b"t"),)


def test_headers_without_a_mask_are_left_as_they_are() -> None:
    fields = ((b"Authorization", b"Bearer sk-client"), (b"session-id", b"t"))
    h = http.Headers(fields)
    assert drop_masked(h) == []
    assert h.fields == fields


def test_a_plain_mapping_works_too() -> None:
    h = {"authorization": "Bearer [stickyroute:a]", "session-id": "t"}
    assert drop_masked(h) == ["authorization"]
    assert h == {"session-id": "t"}


def test_mask_headers_masks_once_then_finds_nothing_to_do() -> None:
    h = http.Headers([(b"Authorization", b"Bearer sk-acct"), (b"session-id", b"t")])
    assert mask_headers(h, ["authorization"], "acct-0") == 1
    masked_fields = h.fields
    assert h["authorization"] == "Bearer [stickyroute:acct-0]"
    assert mask_headers(h, ["authorization"], "acct-0") == 0
    assert h.fields is masked_fields  # untouched
    assert mask_headers(h, ["x-api-key"], "acct-0") == 0  # not there: nothing to mask


def reference(h: http.Headers, names: list[str], alias: str) -> tuple[int, object]:
    """mask_headers through Headers' own get and set."""
    h = http.Headers(h.fields)
    count = 0
    for name in names:
        value = h.get(name)
        if value is not None and MARK not in value:
            h[name] = masked(alias, value)
            count += 1
    return count, h.fields


NAMES = ["Authorization", "authorization", "X-Api-Key", "session-id", "Cookie"]


@given(st.lists(st.tuples(st.sampled_from(NAMES),
                          st.sampled_from(["Bearer sk-1", "k", "[stickyroute:a]", "é"])),
                max_size=8),
       st.lists(st.sampled_from(NAMES), max_size=3))
def test_raw_fields_mask_as_headers_get_and_set_do(fields: list[tuple[str, str]],
                                                    names: list[str]) -> None:
    h = http.Headers([(n.encode(), v.encode()) for n, v in fields])
    expected = reference(h, names, "acct-0")
    assert (mask_headers(h, names, "acct-0"), h.fields) == expected
