"""Incremental Server-Sent Events parsing, and incremental decoding of content-encoded streams.

Bytes arrive in whatever pieces the network makes: an event may be split anywhere (even
inside a `\\r\\n` or a UTF-8 character), and one piece may hold many events. Parsing never
raises on input and keeps memory bounded: an over-long event turns the parser off instead.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection, Iterator
from typing import NamedTuple

import brotli
import zstandard

MAX_EVENT = 16 * 1024 * 1024  # bytes one event may take (response.completed repeats the output)


class SseEvent(NamedTuple):
    event: str  # "" when the stream gave no `event:` line (Chat Completions)
    data: str


class SseParser:
    """feed(bytes) -> complete events; close() flushes what the last bytes completed.

    `skip`: names of events nobody reads (text deltas are nearly every event of an answer):
    they are dropped without their data being decoded or returned. `ignorable`: asked about
    the raw data of an unnamed event that arrived whole in one piece; True drops it likewise.
    `events(bytes)` is feed() as the caller consumes it: an observer that learns from one
    event can make `ignorable` drop the next ones of the same piece.
    """

    def __init__(self, max_event: int = MAX_EVENT, skip: Collection[str] = (),
                 ignorable: Callable[[bytes], bool] | None = None) -> None:
        self.max_event = max_event
        self.overflowed = False
        self.skip = frozenset(skip)
        self.ignorable = ignorable
        self._skip_bytes = frozenset(name.encode() for name in self.skip)
        self._last_skipped = b""  # the event line of the last event skipped by name
        self._line = bytearray()  # an incomplete line
        self._event = ""
        self._data: list[str] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[SseEvent]:
        return list(self.events(chunk))

    def events(self, chunk: bytes) -> Iterator[SseEvent]:
        if self.overflowed or not chunk:
            return iter(())
        # (bytes.find, not `in`: `in` costs ~10x more on a short chunk)
        if (chunk.endswith(b"\n\n") and not self._line and not self._data and not self._event
                and chunk.find(b"\r") == -1):
            return self._whole_events(chunk)  # the usual piece: one or more whole events
        return iter(self._lines(chunk))

    def _lines(self, chunk: bytes) -> list[SseEvent]:
        if chunk.find(b"\n") == -1 and chunk.find(b"\r") == -1:
            self._line += chunk  # the middle of a long line: no rescanning
            self._check_size()
            return []
        buf = bytes(self._line) + chunk
        self._line.clear()
        lines = buf.splitlines(keepends=True)
        last = lines[-1]
        # A trailing lone "\r" may be the first half of "\r\n": wait for the next byte.
        if not last.endswith((b"\n", b"\r")) or last.endswith(b"\r"):
            self._line += lines.pop()
        out: list[SseEvent] = []
        for line in lines:
            self._take_line(line.rstrip(b"\r\n"), out)
        self._check_size()
        return out

    def _whole_events(self, chunk: bytes) -> Iterator[SseEvent]:
        """Events that start and end in this chunk (nothing pending, "\n" line ends only):
        one block of lines each; a skipped event's block is dropped after reading its name."""
        out: list[SseEvent] = []
        last = self._last_skipped
        for block in chunk[:-2].split(b"\n\n"):
            if last and block.startswith(last) and block.find(b"\nevent:", len(last) - 1) == -1:
                continue  # the same skipped name as before (a long answer's text deltas)
            if self._skip_bytes and block.startswith(b"event:"):
                end = block.find(b"\n")
                name = block[6:end] if end != -1 else block[6:]
                if name.startswith(b" "):
                    name = name[1:]
                if name in self._skip_bytes and block.find(b"\nevent:") == -1:
                    if end != -1:
                        last = self._last_skipped = block[:end + 1]  # "event: NAME\n"
                    continue  # its only event line names it: nobody reads it
            elif self.ignorable is not None and block.startswith(b"data:") and block.find(
                    b"\n") == -1:
                if self.ignorable(block[6:] if block.startswith(b"data: ") else block[5:]):
                    continue
            for line in block.split(b"\n"):
                self._take_line(line, out)
            self._take_line(b"", out)
            if out:
                yield from out
                out.clear()

    def close(self) -> list[SseEvent]:
        """The end of the stream: a final line without its terminator still counts."""
        out: list[SseEvent] = []
        if self.overflowed:
            return out
        if self._line:
            self._take_line(bytes(self._line).rstrip(b"\r\n"), out)
            self._line.clear()
        self._take_line(b"", out)  # a last event without its blank line is dispatched too
        return out

    def _take_line(self, line: bytes, out: list[SseEvent]) -> None:
        if not line:
            if self._data and self._event not in self.skip:
                out.append(SseEvent(self._event, "\n".join(self._data)))
            self._event, self._data, self._size = "", [], 0
            return
        if line.startswith(b":"):
            return  # a comment (keep-alive)
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
            self._size += len(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")

    def _check_size(self) -> None:
        if self._size + len(self._line) > self.max_event:
            self.overflowed = True
            self._line.clear()
            self._data = []


BATCH = 32 * 1024  # bytes of a stream collected before they are decoded and parsed together


class Batch:
    """A stream's pieces, handed on joined once BATCH bytes are in (or when asked).

    An SSE answer reaches the proxy in one network piece per event, and mitmproxy calls the
    stream callable for each: parsing per piece put our code between every two pieces of the
    relay (~20% more proxy CPU per MB, most of it cache misses around our own ~2 µs). Batched,
    a piece costs an append; observing lags by at most BATCH bytes, which nothing needs sooner
    than the end of the answer. Memory stays bounded by BATCH per stream.
    """

    def __init__(self, limit: int = BATCH) -> None:
        self.limit = limit
        self._parts: list[bytes] = []
        self._size = 0

    def add(self, piece: bytes) -> bytes | None:
        """The batch when this piece fills it, else None."""
        self._parts.append(piece)
        self._size += len(piece)
        return self.take() if self._size >= self.limit else None

    def take(self) -> bytes:
        """Everything collected so far (b"" when nothing)."""
        data = b"".join(self._parts)
        self._parts.clear()
        self._size = 0
        return data


def parse_all(data: bytes) -> list[SseEvent]:
    """Every event of a whole stream at once."""
    parser = SseParser()
    return parser.feed(data) + parser.close()


def decoder_for(encoding: str) -> Callable[[bytes], bytes] | None:
    """An incremental decoder for a Content-Encoding; None when we cannot decode it.

    "identity" or no encoding gives a pass-through. Decoders raise on corrupt input; the
    caller stops observing then (the bytes still reach the client untouched).
    """
    codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
    steps: list[Callable[[bytes], bytes]] = []
    for coding in reversed(codings):  # the last coding applied is undone first
        step = _step(coding)
        if step is None:
            return None
        steps.append(step)

    def decode(chunk: bytes) -> bytes:
        for step in steps:
            chunk = step(chunk)
        return chunk

    return decode


def _step(coding: str) -> Callable[[bytes], bytes] | None:
    if coding == "identity":
        return lambda b: b
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress
    if coding == "deflate":
        return _Deflate().decompress
    if coding == "br":
        brotli_step: Callable[[bytes], bytes] = brotli.Decompressor().process
        return brotli_step
    if coding == "zstd":
        zstd: Callable[[bytes], bytes] = zstandard.ZstdDecompressor().decompressobj().decompress
        return zstd
    return None


class _Deflate:
    """HTTP "deflate" is zlib-wrapped by the spec but raw deflate in the wild: try both."""

    def __init__(self) -> None:
        self._obj: zlib._Decompress | None = None

    def decompress(self, chunk: bytes) -> bytes:
        if self._obj is None:
            if not chunk:
                return b""
            raw = (chunk[0] & 0x0F) != 8  # a zlib header's first byte names method 8
            self._obj = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
        return self._obj.decompress(chunk)
