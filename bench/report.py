"""The bench's Markdown report and its cache-by-turn plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .economics import ScenarioResult
from .limits import LimitsResult
from .overhead import APIS, SSE_TARGET, BodyResult, StreamResult
from .scale import ScaleResult

TARGET_1M_MB = 300.0


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def _spread(x: float | None) -> str:
    if x is None:
        return "n/a"
    return "∞" if math.isinf(x) else f"{x:.2f}"


def economics(results: list[ScenarioResult], accounts: int) -> list[str]:
    base = next((r.share for r in results if r.name == "a"), 0.0)
    rows = []
    for r in results:
        n = 1 if r.name == "a" else accounts
        rows.append([
            f"({r.name}) {r.title}", _pct(r.share), _pct(r.share / base) if base else "n/a",
            " / ".join(str(v) for v in r.requests_per_account.values()),
            _spread(r.spread(r.requests_per_account, n)),
            " / ".join(str(v) for v in r.sessions_per_account.values()),
            _spread(r.spread(r.sessions_per_account, n)),
            r.affinity_breaks, r.client_errors, r.turns_failed, f"{r.seconds:.1f}"])
    lines = _table(["scenario", "cached share", "% of (a)", "requests per account",
                    "spread", "sessions per account", "spread", "affinity breaks",
                    "client errors", "failed turns", "seconds"], rows)
    turns = max((len(r.cache_by_turn) for r in results), default=0)
    lines += ["", "Cached share of prompt tokens per turn:", ""]
    lines += _table(["turn", *(f"({r.name})" for r in results)],
                    [[t + 1, *(_pct(r.cache_by_turn[t]) for r in results)]
                     for t in range(turns)])
    return lines


def prefixes(results: list[ScenarioResult], accounts: int) -> list[str]:
    """(e): each run against the same workload on one account (the first row)."""
    base = results[0].share if results else 0.0
    rows = []
    for r in results:
        n = 1 if r.name == "e/ceiling" else accounts
        first = r.cache_by_turn[0] if r.cache_by_turn else 0.0
        rows.append([r.title, _pct(r.share), _pct(r.share / base) if base else "n/a",
                     _pct(first),
                     " / ".join(str(v) for v in r.requests_per_account.values()),
                     _spread(r.spread(r.requests_per_account, n)),
                     " / ".join(str(v) for v in r.sessions_per_account.values()),
                     _spread(r.spread(r.sessions_per_account, n)), f"{r.seconds:.1f}"])
    return _table(["(e) placement", "cached share", "% of one account", "first turns cached",
                   "requests per account", "spread", "sessions per account", "spread",
                   "seconds"], rows)


def windows(results: list[LimitsResult]) -> list[str]:
    rows = [[r.title, r.completed, r.requests, r.limited or "none",
             " / ".join(f"{u:g}%" for u in r.used_then.values()), f"{r.seconds:.1f}"]
            for r in results]
    return _table(["(f) strategy", "conversations done before the first limit",
                   "requests before it", "account limited first", "windows used at the end",
                   "seconds"], rows)


def overhead(bodies: list[BodyResult], streams: list[StreamResult]) -> list[str]:
    rows = [[b.cell.api, "yes" if b.cell.streamed else "no", b.cell.size, b.cell.encoding,
             b.requests, f"{b.cpu_noop_ms:.2f}", f"{b.cpu_sticky_ms:.2f}",
             f"{100 * b.cpu_added:+.1f}%", f"≤ {100 * b.cell.limit:.0f}%",
             "met" if b.met else "**missed**",
             f"{b.p50_noop_ms:.1f}", f"{b.p50_sticky_ms - b.p50_noop_ms:+.2f}",
             f"{b.p99_noop_ms:.1f}", f"{b.p99_sticky_ms - b.p99_noop_ms:+.2f}"]
            for b in bodies]
    lines = _table(["API", "streamed", "body", "encoding", "requests", "CPU ms/req no-op",
                    "CPU ms/req sticky", "CPU added", "target", "", "p50 ms no-op",
                    "p50 added ms", "p99 ms no-op", "p99 added ms"], rows)
    for s in streams:
        lines += ["", f"SSE: one streamed {APIS[s.api]} answer of {s.megabytes:.1f} MB:", ""]
        lines += _table(["path", "MB/s", "proxy CPU ms per MB"], [
            ["direct to the fake", f"{s.direct_mbps:.1f}", "-"],
            ["mitmdump + no-op", f"{s.noop_mbps:.1f}", f"{s.cpu_noop_ms_per_mb:.0f}"],
            ["mitmdump + stickyroute", f"{s.sticky_mbps:.1f}",
             f"{s.cpu_sticky_ms_per_mb:.0f}"]])
    return lines


def scale(results: list[ScaleResult]) -> list[str]:
    rows = [[f"{r.pins:,}", f"{r.bytes_per_pin:.0f}", f"{r.table_mb:.0f}", f"{r.lookup_us:.2f}",
             f"{r.hook_us:.0f}", f"{r.sweep_ms:.1f}", f"{r.stall_unsliced_ms:.1f}",
             f"{r.stall_sliced_ms:.1f}"] for r in results]
    return _table(["pins", "bytes/pin", "table MB", "get+touch µs", "request hook µs",
                   "sweep of 10% ms", "stall, one-call sweep ms", "stall, addon sweep ms"],
                  rows)


def targets(econ: list[ScenarioResult], accounts: int, bodies: list[BodyResult],
            streams: list[StreamResult], table: list[ScaleResult],
            prefix_runs: list[ScenarioResult] | None = None,
            limit_runs: list[LimitsResult] | None = None) -> list[list[str]]:
    rows: list[list[str]] = []

    def row(name: str, value: str, ok: bool | None) -> None:
        rows.append([name, value, "n/a" if ok is None else ("met" if ok else "**missed**")])

    by = {r.name: r for r in econ}
    if "a" in by and "c" in by and by["a"].share:
        ratio = by["c"].share / by["a"].share
        row("cached share (c) ≥ 99% of (a)", _pct(ratio), ratio >= 0.99)
    if "c" in by:
        spreads = [by["c"].spread(by["c"].requests_per_account, accounts),
                   by["c"].spread(by["c"].sessions_per_account, accounts)]
        worst = max(s for s in spreads if s is not None) if accounts > 1 else None
        row("load spread (c) ≤ 1.25 (requests, sessions)",
            " / ".join(_spread(s) for s in spreads), None if worst is None else worst <= 1.25)
    pre = {r.name: r for r in prefix_runs or []}
    if {"e/ceiling", "e/aware", "e/blind"} <= set(pre) and pre["e/ceiling"].share:
        base, aware = pre["e/ceiling"].share, pre["e/aware"]
        ratio = aware.share / base
        row("(e) placed by prefix: cached share ≥ 99.5% of one account",
            f"{_pct(ratio)} (blind to prefixes: {_pct(pre['e/blind'].share / base)})",
            ratio >= 0.995)
        spreads = [aware.spread(aware.requests_per_account, accounts),
                   aware.spread(aware.sessions_per_account, accounts)]
        worst = max(s for s in spreads if s is not None) if accounts > 1 else None
        row("(e) placed by prefix: load spread ≤ 1.25 (requests, sessions)",
            " / ".join(_spread(s) for s in spreads), None if worst is None else worst <= 1.25)
    lim = {r.name: r for r in limit_runs or []}
    if {"headroom", "round-robin", "blind"} <= set(lim):
        h, rr = lim["headroom"].completed, lim["round-robin"].completed
        row("(f) headroom: conversations done before the first limit, not fewer than "
            "round-robin", f"{h} vs {rr} (windows ignored: {lim['blind'].completed})", h >= rr)
    for limit, label in ((0.10, "1 KB and 100 KB"), (0.25, "1 MB")):
        cells = [b for b in bodies if b.cell.limit == limit]
        if cells:
            dearest = max(cells, key=lambda b: b.cpu_added)
            met = sum(b.met for b in cells)
            row(f"CPU added per request ≤ {100 * limit:.0f}% ({label})",
                f"worst {100 * dearest.cpu_added:+.1f}% ({dearest.cell.label}); {met} of "
                f"{len(cells)} cells met", met == len(cells))
    at100 = [b for b in bodies if b.cell.size == "100 KB"]
    if at100:
        added = max(b.p99_sticky_ms - b.p99_noop_ms for b in at100)
        row("added p99 ≤ 2 ms at 100 KB", f"worst {added:+.2f} ms", added <= 2.0)
    if streams:
        row(f"SSE throughput ≥ {100 * SSE_TARGET:.0f}% of the no-op proxy's",
            ", ".join(f"{APIS[s.api]} {_pct(s.ratio)} ({s.sticky_mbps:.1f} vs "
                      f"{s.noop_mbps:.1f} MB/s; CPU per MB "
                      f"{s.cpu_sticky_ms_per_mb / s.cpu_noop_ms_per_mb - 1:+.0%})"
                      for s in streams), all(s.met for s in streams))
    if table:
        ratio = table[-1].hook_us / table[0].hook_us
        row("per-request work independent of table size",
            f"request hook {table[0].hook_us:.0f} µs at {table[0].pins:,} pins, "
            f"{table[-1].hook_us:.0f} µs at {table[-1].pins:,}", ratio <= 1.5)
        biggest = table[-1]
        mb = biggest.bytes_per_pin * 1_000_000 / 1e6
        how = "measured" if biggest.pins >= 1_000_000 else f"from {biggest.pins:,} pins"
        row("1 M pins ≤ 300 MB", f"{mb:.0f} MB ({how})", mb <= TARGET_1M_MB)
        stall = max(r.stall_sliced_ms for r in table)
        row("no sweep stall > 10 ms", f"{stall:.1f} ms (one-call sweep: "
            f"{max(r.stall_unsliced_ms for r in table):.1f} ms)", stall <= 10.0)
    return rows


def markdown(meta: dict[str, str], econ: list[ScenarioResult], accounts: int,
             bodies: list[BodyResult], streams: list[StreamResult],
             table: list[ScaleResult], notes: list[str],
             prefix_runs: list[ScenarioResult] | None = None,
             limit_runs: list[LimitsResult] | None = None) -> str:
    lines = ["# stickyroute bench", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += ["", "## Targets", ""]
    lines += _table(["target", "measured", ""],
                    targets(econ, accounts, bodies, streams, table, prefix_runs, limit_runs))
    if econ:
        lines += ["", "## Cache economics", ""] + economics(econ, accounts)
    if prefix_runs:
        lines += ["", "## Shared system prompts: placed by prefix or not (e)", ""]
        lines += prefixes(prefix_runs, accounts)
    if limit_runs:
        lines += ["", "## Usage windows: conversations before the first limit (f)", ""]
        lines += windows(limit_runs)
    if bodies:
        lines += ["", "## Overhead (no-op addon vs stickyroute, same requests)", ""]
        lines += overhead(bodies, streams)
    if table:
        lines += ["", "## Pin table scale", ""] + scale(table)
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def plot(econ: list[ScenarioResult], path: Path) -> Path | None:
    """cache % per turn, one line per scenario; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for r in econ:
        turns = range(1, len(r.cache_by_turn) + 1)
        shared = r.name.startswith("e/")  # the shared-prompt workload: its own line style
        ax.plot(turns, [100 * x for x in r.cache_by_turn], marker="s" if shared else "o",
                linestyle="--" if shared else "-", label=f"({r.name}) {r.title}")
    ax.set_xlabel("turn of the conversation")
    ax.set_ylabel("prompt tokens read from the cache (%)")
    ax.set_ylim(0, 100)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # turns are whole numbers
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Prompt-cache hits per turn, every scenario of the run (just bench)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
