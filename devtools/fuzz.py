"""Malformed requests for a real mitmdump with stickyroute, and a sink upstream that counts them.

`run_fuzz(proxy, count)` sends `count` hostile requests (broken JSON, wrong types, deep and huge
bodies, invalid UTF-8, lying or unknown Content-Encoding, zstd/gzip/br/deflate bombs, odd
headers) to the account hosts from several threads and returns what came back. The sink (point
devtools/redirect_addon.py's fake_upstream at it) answers every request 200 and records whether it
carried an account credential, a masked value, or nothing.
"""

from __future__ import annotations

import gzip
import json
import random
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import brotli
import zstandard

from devtools.harness import Mitmdump, raw_client

TARGETS = ["https://api.openai.com/v1/responses", "https://api.openai.com/v1/chat/completions",
           "https://api.anthropic.com/v1/messages?beta=true", "https://api.openai.com/v1/models",
           "https://chatgpt.com/backend-api/codex/responses", "https://api.anthropic.com/v1/x"]
OVER_CAP = 33 * 1024 * 1024  # bodycap.MAX_BODY is 32 MiB


class Sink:
    """Threaded HTTP server: reads each body, answers `{}`; counts what credentials arrived."""

    def __init__(self, secrets: set[str]) -> None:
        self.secrets = secrets
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                while n > 0:
                    n -= len(self.rfile.read(min(n, 1 << 20)) or b"x" * n)
                values = [v for _, v in self.headers.items()]
                kind = ("masked" if any("[stickyroute:" in v for v in values) else
                        "account" if any(v.removeprefix("Bearer ") in sink.secrets
                                         for v in values) else "none")
                with sink.lock:
                    sink.seen[kind] += 1
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Sink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _bombs() -> list[tuple[bytes, str]]:
    zeros = b"0" * (64 << 20)  # twice the cap
    doc = b'{"model":"m","input":"' + zeros + b'"}'
    return [(zstandard.ZstdCompressor(level=3).compress(doc), "zstd"),
            (gzip.compress(doc, 6), "gzip"), (zlib.compress(doc, 6), "deflate"),
            (brotli.compress(doc, quality=1), "br")]


def _valid(rng: random.Random) -> dict[str, Any]:
    return {"model": "gpt-5", "input": [{"role": "user", "content": f"q{rng.random()}"}],
            "stream": rng.random() < 0.3, "store": False, "reasoning": {"effort": "low"}}


WRONG_TYPES: list[Any] = [None, True, 0, -1, 1e308, "", "x" * 300, [], [None], {}, {"a": [1]},
                          "\ud800", "\x00"]
FIELDS = ["prompt_cache_key", "metadata", "conversation", "input", "messages", "include",
          "reasoning", "store", "system", "instructions", "model", "previous_response_id"]


def _body(rng: random.Random, bombs: list[tuple[bytes, str]]
          ) -> tuple[bytes, str | bytes | None]:
    """One hostile body and the Content-Encoding header to send with it (None: no header)."""
    plain = json.dumps(_valid(rng)).encode()
    kind = rng.randrange(14)
    if kind == 0:  # truncated JSON
        return plain[: rng.randrange(len(plain))], None
    if kind == 1:  # random bytes
        return rng.randbytes(rng.randrange(1, 2000)), None
    if kind == 2:  # wrong types in every field we look at
        body: dict[str, Any] = {f: rng.choice(WRONG_TYPES) for f in rng.sample(FIELDS, 6)}
        body["metadata"] = rng.choice([{"user_id": rng.choice(WRONG_TYPES)},
                                       {"user_id": "{" + "[" * 3000}, {"session_id": 5}])
        return json.dumps(body).encode(), None
    if kind == 3:  # deep nesting
        depth = rng.choice([100, 1000, 5000]) if rng.random() < 0.95 else 100_000
        return b'{"input":' + b"[" * depth + b"]" * depth + b"}", None
    if kind == 4:  # huge but under the cap
        return json.dumps({"model": "m", "input": "y" * (rng.randrange(10_000, 100_000)
                                                      if rng.random() < 0.95 else 1_000_000)}
                          ).encode(), None
    if kind == 5:  # invalid UTF-8 and other encodings of JSON
        return rng.choice([b'{"input":"\xff\xfe\xc3\x28"}', plain.decode().encode("utf-16"),
                           b"\xef\xbb\xbf" + plain, b'{"a":"\xed\xa0\x80"}']), None
    if kind == 6:  # lying Content-Encoding
        return rng.choice([(plain, "gzip"), (plain, "zstd"), (plain, "br"), (plain, "deflate"),
                           (gzip.compress(plain), "zstd"), (gzip.compress(plain), None),
                           (zstandard.ZstdCompressor().compress(plain), "gzip")])
    if kind == 7:  # unknown or stacked encodings
        return plain, rng.choice(["compress", "gzip, zstd", b"x-\xe9", "", "GZIP", "identity"])
    if kind == 8:  # valid, compressed (the addon injects into these)
        enc = rng.choice(["gzip", "zstd", "br", "deflate"])
        comp = {"gzip": gzip.compress, "zstd": zstandard.ZstdCompressor().compress,
                "br": brotli.compress, "deflate": zlib.compress}[enc]
        return comp(plain), enc
    if kind == 9 and rng.random() < 0.05:  # a bomb (~60 in 10 000 requests)
        return rng.choice(bombs)
    if kind == 10:  # truncated compressed stream
        comp = zstandard.ZstdCompressor().compress(plain * 50)
        return comp[: len(comp) // 2], "zstd"
    if kind == 11:  # JSON that is not an object
        return rng.choice([b"[]", b"null", b"1e999999", b'"str"', b"1" * 5000, b"{}"]), None
    if kind == 12:  # NaN, duplicate keys, huge numbers
        return (b'{"prompt_cache_key":NaN,"include":"x","include":[1],"n":' + b"9" * 4500
                + b',"store":false,"reasoning":{}}'), None
    return plain, None


def _headers(rng: random.Random) -> dict[str, str | bytes]:
    h: dict[str, str | bytes] = {"content-type": rng.choice(["application/json", "text/plain",
                                                             "\u00e9/\u00e9".encode()])}
    roll = rng.randrange(8)
    if roll == 0:
        h["session-id"] = "s" * rng.choice([1, 256, 257, 20_000])
    elif roll == 1:
        h["x-sticky-session"] = rng.choice(["-", "a/b/c", b"\xff\xfe", "[stickyroute:x]"])
    elif roll == 2:
        h["authorization"] = rng.choice(["", "Bearer", "Basic !!!", "Bearer [stickyroute:oa]",
                                         "x" * 5000])
    elif roll == 3:
        h["x-api-key"] = b"\xff\xfe\x80"
    elif roll == 4:
        h["proxy-authorization"] = "Basic " + "=" * 7
    elif roll == 5:
        h["metadata"] = "{"
    return h


def requests(count: int, seed: int = 8) -> Iterator[tuple[str, str, dict[str, Any], bytes]]:
    rng = random.Random(seed)
    bombs = _bombs()
    over_cap_left = 3
    for i in range(count):
        url = rng.choice(TARGETS)
        headers = _headers(rng)
        if over_cap_left and i % 3000 == 1500:
            over_cap_left -= 1
            body, enc = b'{"input":"' + b"z" * OVER_CAP + b'"}', None
        else:
            body, enc = _body(rng, bombs)
        if enc is not None:
            headers["content-encoding"] = enc
        method = rng.choice(["POST"] * 8 + ["PUT", "GET"])
        yield method, url, headers, body


def run_fuzz(proxy: Mitmdump, count: int, threads: int = 8, seed: int = 8,
             progress: Callable[[int], None] | None = None,
             work: list[tuple[str, str, dict[str, Any], bytes]] | None = None) -> Counter[str]:
    """Send `count` hostile requests through `proxy`; returns status codes and client errors."""
    todo = iter(work if work is not None else list(requests(count, seed)))
    lock = threading.Lock()
    results: Counter[str] = Counter()

    def worker() -> None:
        client = raw_client(proxy, timeout=60)
        while True:
            with lock:
                item = next(todo, None)
            if item is None:
                break
            method, url, headers, body = item
            try:
                r = client.request(method, url, headers=headers, content=body)
                key = str(r.status_code)
            except Exception as e:  # a dropped connection would be a proxy failure
                key = f"client-error:{type(e).__name__}"
                client.close()
                client = raw_client(proxy, timeout=60)
            with lock:
                results[key] += 1
                if progress:
                    progress(sum(results.values()))
        client.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return results


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB, from /proc/PID/status."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0])
    return out
