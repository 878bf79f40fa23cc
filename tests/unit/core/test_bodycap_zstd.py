"""zstd request bodies: decoded in one go when one frame says its size, the bounded way
otherwise; never past the cap, never raising."""

import pytest
import zstandard

from stickyroute.core.bodycap import bounded_decode

BODY = b'{"model":"m","input":"' + b"x" * 5000 + b'"}'


@pytest.mark.parametrize("sent", [
    zstandard.ZstdCompressor().compress(BODY),  # one frame, size in its header
    zstandard.ZstdCompressor(write_content_size=False).compress(BODY),  # size unknown
    zstandard.ZstdCompressor().compress(BODY[:100]) + zstandard.ZstdCompressor().compress(
        BODY[100:]),  # two frames: both count
])
def test_every_zstd_shape_decodes_whole(sent: bytes) -> None:
    assert bounded_decode(sent, "zstd", 1_000_000) == BODY


@pytest.mark.parametrize("sent", [
    zstandard.ZstdCompressor().compress(b"0" * 10_000),  # says 10 000: over the cap
    zstandard.ZstdCompressor(write_content_size=False).compress(b"0" * 10_000),  # a bomb
    b"\x28\xb5\x2f\xfd garbage",  # a zstd magic number, then nonsense
])
def test_over_the_cap_or_broken_gives_none(sent: bytes) -> None:
    assert bounded_decode(sent, "zstd", 5_000) is None
