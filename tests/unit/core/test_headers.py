"""One pass over a message's header fields gives the answers mitmproxy's Headers.get gives."""

import pytest
from mitmproxy import http

from stickyroute.core.headers import field, lowered


def _headers(*fields: tuple[bytes, bytes]) -> http.Headers:
    return http.Headers(list(fields))


def test_names_are_lower_cased_and_lookups_answer_as_headers_get() -> None:
    h = _headers((b"Session-ID", b"t-1"), (b"Content-Encoding", b"zstd"),
                 (b"Authorization", b"Bearer sk"))
    low = lowered(h)
    assert low == {"session-id": "t-1", "content-encoding": "zstd", "authorization": "Bearer sk"}
    for name in ("session-id", "SESSION-ID", "content-encoding", "authorization", "missing"):
        assert low.get(name.lower()) == h.get(name)


def test_repeated_fields_fold_as_headers_get_folds_them() -> None:
    h = _headers((b"x-session-id", b"a"), (b"X-Session-Id", b"b"), (b"other", b"c"))
    assert lowered(h)["x-session-id"] == h["x-session-id"] == "a, b"


def test_bytes_that_are_not_utf8_decode_as_mitmproxy_decodes_them() -> None:
    h = _headers((b"session-id", b"caf\xe9"), (b"N\xc4ME", b"v"))
    low = lowered(h)
    assert low["session-id"] == h["session-id"]
    name = b"n\xc4me".decode("utf-8", "surrogateescape")  # only ASCII folds
    assert low[name] == h[name] == "v"


@pytest.mark.parametrize("plain", [{"Session-Id": "t"}, {"session-id": "t"}])
def test_a_plain_mapping_works_too(plain: dict[str, str]) -> None:
    assert lowered(plain) == {"session-id": "t"}


@pytest.mark.parametrize("name", ["content-type", "x-session-id", "missing", "n\xe9"])
def test_field_answers_as_headers_get(name: str) -> None:
    h = _headers((b"Content-Type", b"text/event-stream"), (b"x-session-id", b"a"),
                 (b"X-Session-Id", b"b"), (b"n\xc3\xa9", b"v"))
    assert field(h, name) == h.get(name)
    assert field(dict(h.items()), name) == h.get(name)
