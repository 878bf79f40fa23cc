"""`python -m bench --smoke` runs end to end, so the bench cannot rot between real runs."""

import subprocess
import sys
from pathlib import Path

import pytest

from devtools.harness import REPO


def test_bench_smoke_writes_the_report(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=110)
    assert run.returncode == 0, run.stderr[-3000:]
    text = (tmp_path / "latest.md").read_text()
    assert text in run.stdout
    for heading in ("## Targets", "## Cache economics", "## Overhead", "## Pin table scale"):
        assert heading in text
    assert "| (a) one account, direct | " in text and "| (d) proxy, default" in text
    for api in ("responses", "chat"):  # every API, streamed and not
        for streamed in ("no", "yes"):
            assert f"| {api} | {streamed} | 1 KB | zstd | 4 |" in text
    assert "SSE: one streamed Chat Completions answer" in text
    assert "| CPU added per request ≤ 10% (1 KB and 100 KB) |" in text
    assert "| SSE throughput ≥ 90% of the no-op proxy's |" in text
    assert "| 2,000 |" in text
    # (e) and (f): each of their runs reported, and their target rows
    for row in ("| one account, direct (the ceiling) | ", "| proxy, placed by prompt prefix",
                "| proxy, blind to prefixes", "| headroom (the default) | ", "| round-robin | ",
                "| round-robin, windows ignored", "| (e) placed by prefix: cached share",
                "| (f) headroom: conversations done before the first limit"):
        assert row in text, row
    # The fake upstream saw turns with cached tokens: a broken workload would show 0.0% here.
    direct = next(line for line in text.splitlines() if line.startswith("| (a)"))
    assert "| 0.0% |" not in direct
    pytest.importorskip("matplotlib")
    assert (tmp_path / "cache_by_turn.png").read_bytes().startswith(b"\x89PNG")
