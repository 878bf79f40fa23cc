"""`python -m bench [--quick | --smoke]`: cache economics, overhead and table scale in one run.

Prints a Markdown report and writes it to bench/results/latest.md, with a plot of cache % per
turn per scenario next to it (cache_by_turn.png). Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from devtools.harness import accounts_file

from . import economics, limits, overhead, report, scale
from .economics import Plan
from .limits import LimitsPlan

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Mode:
    plan: Plan
    requests: dict[str, int]  # overhead: requests per cell, by body size
    stream_tokens: int
    stream_repeats: int
    table_sizes: list[int]
    limits: LimitsPlan = LimitsPlan()
    scenarios: str = "abcdef"
    encodings: tuple[str, ...] = ("identity", "zstd")

    @property
    def cells(self) -> list[tuple[overhead.Cell, int]]:
        return overhead.matrix(self.requests, self.encodings)


MODES = {
    "full": Mode(Plan(conversations=24, turns=8, accounts=3, fault_requests=16,
                      prefix_conversations=48, prefix_turns=4),
                 {"1 KB": 200, "100 KB": 200, "1 MB": 60}, 200_000, 3,
                 [10_000, 100_000, 1_000_000]),
    "quick": Mode(Plan(conversations=9, turns=5, accounts=3, fault_requests=6,
                       prefix_conversations=24, prefix_turns=3),
                  {"1 KB": 40, "100 KB": 40, "1 MB": 8}, 20_000, 2, [10_000, 100_000]),
    "smoke": Mode(Plan(conversations=4, turns=2, accounts=2, fault_requests=2,
                       prefix_conversations=6, prefix_turns=1),
                  {"1 KB": 4}, 2_000, 1, [2_000],
                  LimitsPlan(used=(60.0, 0.0), step=10.0, turns=2, conversations=12,
                             concurrent=2),
                  scenarios="adef", encodings=("zstd",)),
}


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def _meta(mode: str, load_before: float) -> dict[str, str]:
    import mitmproxy.version

    dirty = " (uncommitted changes)" if _git("status", "--porcelain", "--", "addon") else ""
    return {
        "run": f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, mode `{mode}`",
        "commit": f"{_git('rev-parse', '--short', 'HEAD')}{dirty}",
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, Python "
                   f"{platform.python_version()}, mitmproxy {mitmproxy.version.VERSION}; "
                   f"load average {load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end",
    }


PROFILE_NOTE = (
    "Where the CPU goes (python -m bench.profile: perf on both mitmdumps while the overhead "
    "rows run, and each hook's CPU inside the proxy; docs/bench.md has the profiles before "
    "and after): per request, stickyroute's own code is spread over ~50 functions, none above "
    "~0.5% of mitmdump's CPU; the largest pieces are the answer hook (its JSON body parsed "
    "for usage and chain ids, the log line through mitmproxy's termlog: a LogRecord, a "
    "timestamp and two unbuffered writes) and the request hook (routing, credentials, the "
    "kept copy). Code that costs X µs in a hot loop (python -m bench.hooks) costs 3-4X here, "
    "between mitmproxy's own work. Per byte: for zstd Responses bodies, decoding (~0.6 ms "
    "per MB, which the no-op proxy never does) and two searches of peek.body_needed (~0.4 ms "
    "per MB); Chat bodies named by a header are not decoded at all."
)
SCALE_NOTE = (
    "Pin memory: the key string (~97 B for a 56-character key), the Pin (15 slots, 152 B), "
    "its time (24 B) and the session dict's entry; creation order is the dict's own order "
    "and use order a list linked through the pins, so no OrderedDict node or creation-order "
    "deque entry per pin."
)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _notes(econ: list[economics.ScenarioResult], plan: Plan,
           prefixes: list[economics.ScenarioResult], windows: list[limits.LimitsResult],
           lim: LimitsPlan) -> list[str]:
    notes = [
        "Cached share = cached prompt tokens / prompt tokens, summed over every successful "
        "request, as the fake upstream counted them (per-account prefix cache, 128-token "
        "blocks, 1 024-token minimum). (a) is the ceiling: one account sees every prefix.",
        "Shared system prompts (4 prompts of 2-8 k tokens over all conversations) are cached "
        "once per account: with N accounts the first turn of a conversation finds its system "
        "prompt cached less often than with one account. That, not pinning, is most of the "
        "gap between (c) and (a) at turn 1.",
        f"(d): from the middle of the run acct-0 answers {plan.fault_requests} requests with "
        f"429 (retry-after {plan.fault_retry_after:g} s); clients retry a failed turn after "
        f"{economics.RETRY_PAUSE:g} s, up to {economics.MAX_ATTEMPTS} times.",
        "Overhead latency is measured by the client, the proxies alternating request by "
        "request; on a shared, loaded machine p99 differences of a few ms are noise. CPU is "
        "the proxy process's own run time (/proc schedstat), the steadier number.",
        "Overhead rows: Codex-shaped Responses bodies (session-id header, prompt_cache_key, "
        "store false, include, message items) and Chat Completions bodies (an "
        "x-session-affinity header, system + user/assistant messages), each plain and "
        "streamed (stream: true; the answer is 200 tokens in ~50 SSE text deltas, against 20 "
        "tokens of JSON unstreamed). The headers name the session, so stickyroute needs "
        "nothing from these bodies and does not parse them (peek.body_needed). Bodies that "
        "carry chain state (reasoning items, previous_response_id) or name no session in a "
        "header are parsed: add the json.loads time (~0.1 ms per 100 KB in a hot loop here, "
        "several times that inside the proxy).",
    ]
    by = {r.name: r for r in econ}
    if "a" in by and "c" in by and by["a"].share_from(1):
        a, c = by["a"].share_from(1), by["c"].share_from(1)
        notes.append(
            f"From the second turn on, (c) caches {_pct(c)} against (a)'s {_pct(a)} "
            f"({_pct(c / a)} of (a)): what (c) still misses is first turns finding a shared "
            "system prompt cold on their account. The default strategy places a new "
            "conversation where its prompt prefix is warm (within a load bound); (e) measures "
            "that on its own workload. Pinning itself loses nothing.")
    if prefixes:
        notes.append(
            f"(e): {plan.prefix_conversations} conversations of {plan.prefix_turns} "
            f"turn{'s' if plan.prefix_turns != 1 else ''} over "
            f"the same 4 shared system prompts, one started every "
            f"{1000 * economics.PREFIX_STAGGER:g} ms (people start conversations over time; "
            "started all at once, their arrival order is random and a prompt is split over "
            "more accounts). Each run is compared with the same workload on one account.")
    if windows:
        used = " / ".join(f"{u:g}%" for u in lim.used)
        notes.append(
            f"(f): {len(lim.used)} subscription accounts whose 5-hour windows start at {used}; "
            f"every request adds {lim.step:g}% to the window of the account serving it; "
            f"conversations of {lim.turns} turns, {lim.concurrent} at a time. Counted: "
            "conversations whose every turn was answered before the fake's first "
            "limit-reached 429. Leaving draining accounts alone (every strategy does) is most "
            "of the gain over windows ignored; headroom's order then spreads like round-robin "
            "(it shares an account's room by the requests running there).")
    notes.append(PROFILE_NOTE)
    notes.append(SCALE_NOTE)
    if "d" in by and by["d"].client_errors:
        notes.append(f"(d) on this commit: {by['d'].client_errors} error answers reached "
                     "clients: the proxy passes the failing account's 429s through "
                     "(failover / transparent retry is issue 4).")
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    size.add_argument("--smoke", action="store_true", help="the smallest run (for the tests)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the results")
    parser.add_argument("--only", default="econ,overhead,scale",
                        help="comma-separated sections: econ, overhead, scale")
    args = parser.parse_args(argv)
    name = "smoke" if args.smoke else "quick" if args.quick else "full"
    mode = MODES[name]
    sections = set(args.only.split(","))
    load_before = os.getloadavg()[0]
    econ: list[economics.ScenarioResult] = []
    prefixes: list[economics.ScenarioResult] = []
    windows: list[limits.LimitsResult] = []
    bodies: list[overhead.BodyResult] = []
    streams: list[overhead.StreamResult] = []
    table: list[scale.ScaleResult] = []
    with tempfile.TemporaryDirectory(prefix="stickyroute-bench-") as tmp:
        work = Path(tmp)
        if "econ" in sections:
            _say(f"cache economics: scenarios {', '.join(mode.scenarios)}")
            econ = economics.run(mode.plan, work, mode.scenarios)
            if "e" in mode.scenarios:
                _say("(e) shared system prompts: by prefix vs blind")
                prefixes = economics.run_prefixes(mode.plan, work)
            if "f" in mode.scenarios:
                _say("(f) usage windows: headroom vs round-robin")
                windows = limits.run(mode.limits, work)
        if "overhead" in sections:
            _say("overhead: no-op vs stickyroute")
            bodies, streams = overhead.run(work, mode.cells, mode.stream_tokens,
                                           mode.stream_repeats)
        if "scale" in sections:
            _say("pin table scale")
            accounts = accounts_file(work / "accounts-scale.yaml",
                                     {f"sk-bench-{i}": f"acct-{i}" for i in range(3)})
            table = scale.run(mode.table_sizes, accounts)
    text = report.markdown(_meta(name, load_before), econ, mode.plan.accounts, bodies, streams,
                           table, _notes(econ, mode.plan, prefixes, windows, mode.limits),
                           prefixes, windows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.md").write_text(text)
    runs = [*econ, *prefixes]
    png = report.plot(runs, args.out / "cache_by_turn.png") if runs else None
    print(text)
    _say(f"wrote {args.out / 'latest.md'}" + (f" and {png}" if png else ""))
    return 0


_T0 = time.monotonic()


def _say(message: str) -> None:
    print(f"[bench {time.monotonic() - _T0:5.1f}s] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
