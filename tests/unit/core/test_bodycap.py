"""core/bodycap.py: bounded decoding stops at the cap and refuses what it does not know."""

import gzip
import json
import zlib

import brotli
import pytest
import zstandard

from stickyroute.core.bodycap import bounded_decode

BODY = json.dumps({"model": "m", "input": "x" * 1000}).encode()
ENCODERS = {
    "gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress,
    "zstd": zstandard.ZstdCompressor().compress, "identity": lambda b: b,
}


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_bounded_decode_round_trips_and_stops_at_the_cap(encoding):
    encode = ENCODERS[encoding]
    assert bounded_decode(encode(BODY), encoding, 10_000) == BODY
    assert bounded_decode(encode(BODY), encoding.upper(), len(BODY)) == BODY
    assert bounded_decode(encode(BODY), encoding, len(BODY) - 1) is None
    bomb = encode(b"0" * (8 << 20))
    assert bounded_decode(bomb, encoding, 1 << 20) is None
    junk = b"\x00not " + encoding.encode()
    assert bounded_decode(junk, encoding, 1 << 20) == (junk if encoding == "identity" else None)


@pytest.mark.parametrize("encoding", ["gzip, br", "compress", "x-unknown"])
def test_bounded_decode_refuses_encodings_it_does_not_know(encoding):
    assert bounded_decode(BODY, encoding, 1 << 20) is None
