"""Overhead: the same requests through mitmdump + a no-op addon and mitmdump + stickyroute.

Both proxies run side by side in one run against one fake upstream (its own process, so it
does not share the client's GIL); requests alternate between them so drift hits both alike.
CPU is the proxy process's own (sum of its threads' run time from /proc, in nanoseconds);
latency is what the client sees, so "added" is stickyroute's p50/p99 minus the no-op's.
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import zstandard

from devtools.harness import (
    NOOP_ADDON,
    OPENAI_BASE_URL,
    REDIRECT_ADDON,
    REPO,
    STICKY_ADDON,
    Mitmdump,
    accounts_file,
    find_free_port,
    raw_client,
)

from .workload import CHARS_PER_TOKEN, words

SIZES = {"1 KB": 1_000, "100 KB": 100_000, "1 MB": 1_000_000}
KEYS = {"sk-bench-0": "acct-0", "sk-bench-1": "acct-1"}
SESSIONS = 8
APIS = {"responses": "Responses (Codex)", "chat": "Chat Completions"}
# Answer length asked of the fake: a short JSON answer, and a streamed one of ~50 text deltas
# (the fake sends 4 words a delta), so the per-event work of both proxies shows.
OUTPUT_TOKENS = {False: 20, True: 200}
# Added CPU the issue accepts (issue 16): 10% up to 100 KB, 25% at 1 MB.
LIMITS = {"1 KB": 0.10, "100 KB": 0.10, "1 MB": 0.25}
SSE_TARGET = 0.90  # stickyroute's SSE throughput over the no-op's


@dataclass(frozen=True)
class Cell:
    """One row of the overhead matrix: which API, streamed or not, body size, encoding."""

    api: str
    streamed: bool
    size: str
    encoding: str

    @property
    def limit(self) -> float:
        return LIMITS[self.size]

    @property
    def label(self) -> str:
        return (f"{self.api}{' streamed' if self.streamed else ''} {self.size} "
                f"{self.encoding}")


def matrix(sizes: dict[str, int], encodings: tuple[str, ...],
           apis: tuple[str, ...] = ("responses", "chat"),
           streamed: tuple[bool, ...] = (False, True)) -> list[tuple[Cell, int]]:
    """Every cell with its request count; 1 MB bodies only unstreamed (the answer does not
    grow with the request, so streaming adds nothing there that 100 KB does not show)."""
    return [(Cell(api, s, size, enc), n) for size, n in sizes.items() for api in apis
            for s in streamed if not (s and size == "1 MB") for enc in encodings]


@dataclass
class BodyResult:
    cell: Cell
    requests: int
    cpu_noop_ms: float  # proxy CPU per request
    cpu_sticky_ms: float
    p50_noop_ms: float
    p50_sticky_ms: float
    p99_noop_ms: float
    p99_sticky_ms: float

    @property
    def cpu_added(self) -> float:
        return self.cpu_sticky_ms / self.cpu_noop_ms - 1 if self.cpu_noop_ms else 0.0

    @property
    def met(self) -> bool:
        return self.cpu_added <= self.cell.limit


@dataclass
class StreamResult:
    api: str
    megabytes: float  # size of one streamed answer
    direct_mbps: float
    noop_mbps: float
    sticky_mbps: float
    cpu_noop_ms_per_mb: float
    cpu_sticky_ms_per_mb: float

    @property
    def ratio(self) -> float:
        return self.sticky_mbps / self.noop_mbps if self.noop_mbps else 0.0

    @property
    def met(self) -> bool:
        return self.ratio >= SSE_TARGET


def cpu_ns(pid: int) -> int:
    """Run time of every thread of a process, in ns (finer than utime+stime's 10 ms ticks)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended in between
    return total


@contextmanager
def fake_process() -> Iterator[str]:
    """`python -m fakeapi` on a free port; yields host:port."""
    port = find_free_port()
    args = [sys.executable, "-m", "fakeapi", "--port", str(port)]
    for key, name in KEYS.items():
        args += ["--key", f"{key}={name}"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not re.search(r"listening at", line):
            raise RuntimeError(f"fakeapi did not start: {line!r}")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _items(size: int, session: int, overhead: int) -> list[dict[str, Any]]:
    # Text that compresses about as well as a real transcript (zstd ~2x), not a repeated
    # line that zstd shrinks a thousandfold.
    rng = random.Random(session)
    items: list[dict[str, Any]] = []
    left = size - overhead
    while left > 0:
        text = words(rng, max(1, min(500, left - 60) // CHARS_PER_TOKEN))
        items.append({"role": "user" if len(items) % 2 == 0 else "assistant", "content": text})
        left -= len(text) + 60
    return items


def make_body(size: int, session: int, api: str = "responses", streamed: bool = False
              ) -> bytes:
    """A request body of about `size` bytes: Codex-shaped Responses (`input` message items,
    prompt_cache_key, store false, include) or a Chat Completions conversation."""
    body: dict[str, Any]
    if api == "responses":
        body = {"model": "gpt-5-codex", "instructions": "You are a coding agent.",
                "input": [], "stream": streamed, "store": False,
                "prompt_cache_key": f"bench-session-{session}",
                "reasoning": {"effort": "medium"},
                "include": ["reasoning.encrypted_content"]}
        body["input"] = [{"type": "message", **item}
                         for item in _items(size, session, len(json.dumps(body)))]
    else:
        body = {"model": "gpt-5", "messages": [], "stream": streamed}
        if streamed:
            body["stream_options"] = {"include_usage": True}
        body["messages"] = [{"role": "system", "content": "You are a coding agent."},
                            *_items(size, session, len(json.dumps(body)) + 60)]
    return json.dumps(body, separators=(",", ":")).encode()


def session_headers(api: str, session: int) -> dict[str, str]:
    """Codex names its thread in `session-id`; the Chat rows use another client header, so
    identity walks further down its list."""
    if api == "responses":
        return {"session-id": f"bench-thread-{session}"}
    return {"x-session-affinity": f"bench-chat-{session}"}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Pair:
    """The no-op proxy and the stickyroute proxy, with one keep-alive client each."""

    def __init__(self, fake: str, workdir: Path, stack: ExitStack,
                 sticky: Sequence[str | Path] = (STICKY_ADDON,),
                 env: Mapping[str, str] | None = None) -> None:
        """`sticky`: the scripts of the stickyroute proxy (another checkout's addon/sticky.py
        to compare with, extra measuring addons); `env`: for both mitmdumps."""
        accounts = accounts_file(workdir / "accounts-overhead.yaml", KEYS)
        redirect = {"fake_upstream": fake}
        self.noop = stack.enter_context(Mitmdump([NOOP_ADDON, REDIRECT_ADDON], redirect,
                                                 confdir=workdir / "mitm-noop", env=env))
        self.sticky = stack.enter_context(Mitmdump(
            [*sticky, REDIRECT_ADDON], {"sticky_accounts": str(accounts), **redirect},
            confdir=workdir / "mitm-sticky", env=env))
        self.clients = {name: stack.enter_context(raw_client(proxy, timeout=120))
                        for name, proxy in (("noop", self.noop), ("sticky", self.sticky))}
        self.pids = {"noop": self.noop.proc.pid, "sticky": self.sticky.proc.pid}  # type: ignore[union-attr]


def measure_bodies(pair: Pair, cell: Cell, n: int) -> BodyResult:
    path = "/responses" if cell.api == "responses" else "/chat/completions"
    url = f"{OPENAI_BASE_URL}{path}"
    zstd = zstandard.ZstdCompressor()
    bodies = []
    for s in range(SESSIONS):
        raw = make_body(SIZES[cell.size], s, cell.api, cell.streamed)
        bodies.append(zstd.compress(raw) if cell.encoding == "zstd" else raw)
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench-0",
               "x-fake-output-tokens": str(OUTPUT_TOKENS[cell.streamed])}
    if cell.encoding == "zstd":
        headers["content-encoding"] = "zstd"
    if cell.streamed:
        headers["accept"] = "text/event-stream"

    def send(name: str, i: int) -> float:
        h = {**headers, **session_headers(cell.api, i % SESSIONS)}
        t0 = time.perf_counter()
        r = pair.clients[name].post(url, headers=h, content=bodies[i % SESSIONS])
        elapsed = time.perf_counter() - t0
        if r.status_code != 200:
            raise RuntimeError(f"{name} proxy answered {r.status_code}: {r.text[:200]}")
        if cell.streamed and not r.headers.get("content-type", "").startswith(
                "text/event-stream"):
            raise RuntimeError(f"{name} proxy: a streamed request got no stream")
        return elapsed

    for i in range(3):  # warm up: connections, TLS, first pins
        send("noop", i), send("sticky", i)
    lat: dict[str, list[float]] = {"noop": [], "sticky": []}
    cpu0 = {name: cpu_ns(pid) for name, pid in pair.pids.items()}
    for i in range(n):
        order = ("noop", "sticky") if i % 2 == 0 else ("sticky", "noop")
        for name in order:
            lat[name].append(send(name, i))
    cpu = {name: (cpu_ns(pid) - cpu0[name]) / n / 1e6 for name, pid in pair.pids.items()}
    ms = {name: [x * 1e3 for x in values] for name, values in lat.items()}
    return BodyResult(cell, n, cpu["noop"], cpu["sticky"],
                      statistics.median(ms["noop"]), statistics.median(ms["sticky"]),
                      _percentile(ms["noop"], 0.99), _percentile(ms["sticky"], 0.99))


def measure_stream(pair: Pair, fake: str, api: str, output_tokens: int,
                   repeats: int) -> StreamResult:
    """One long streamed answer, direct and through each proxy (the proxies' CPU per MB)."""
    body = make_body(2_000, 0, api, streamed=True)
    path = "/responses" if api == "responses" else "/chat/completions"
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench-0",
               **session_headers(api, 0), "x-fake-output-tokens": str(output_tokens)}
    direct = httpx2.Client(trust_env=False, timeout=120)

    def one(client: httpx2.Client, url: str) -> tuple[int, float]:
        t0 = time.perf_counter()
        size = 0
        with client.stream("POST", url, headers=headers, content=body) as r:
            for chunk in r.iter_raw():
                size += len(chunk)
        return size, time.perf_counter() - t0

    results: dict[str, list[float]] = {"direct": [], "noop": [], "sticky": []}
    cpu: dict[str, float] = {"noop": 0.0, "sticky": 0.0}
    size = 0
    with direct:
        for i in range(repeats):
            size, t = one(direct, f"http://{fake}/v1{path}")
            results["direct"].append(size / t / 1e6)
            for name in ("noop", "sticky") if i % 2 == 0 else ("sticky", "noop"):
                before = cpu_ns(pair.pids[name])
                size, t = one(pair.clients[name], f"{OPENAI_BASE_URL}{path}")
                cpu[name] += (cpu_ns(pair.pids[name]) - before) / 1e6
                results[name].append(size / t / 1e6)
    mb = size / 1e6
    mbps = {k: statistics.median(v) for k, v in results.items()}
    return StreamResult(api, mb, mbps["direct"], mbps["noop"], mbps["sticky"],
                        cpu["noop"] / repeats / mb, cpu["sticky"] / repeats / mb)


def run(workdir: Path, cells: list[tuple[Cell, int]], stream_tokens: int, stream_repeats: int,
        stream_apis: tuple[str, ...] = ("responses", "chat"),
        ) -> tuple[list[BodyResult], list[StreamResult]]:
    with ExitStack() as stack:
        fake = stack.enter_context(fake_process())
        pair = Pair(fake, workdir, stack)
        bodies = [measure_bodies(pair, cell, n) for cell, n in cells]
        streams = [measure_stream(pair, fake, api, stream_tokens, stream_repeats)
                   for api in stream_apis]
    return bodies, streams
