"""`just demo` must keep working: it is the first thing a new user runs."""

from __future__ import annotations

import re
import subprocess
import sys

from devtools.harness import REPO


def test_demo_shows_sticky_beats_spread() -> None:
    out = subprocess.run([sys.executable, "-m", "demo"], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    m = re.search(r"served ([\d.]+)% of prompt tokens from cache, versus ([\d.]+)%", out)
    assert m, out
    assert float(m.group(1)) > float(m.group(2)) + 15
    sticky_table = out.split("Without pinning")[0]
    assert "<- " not in sticky_table  # no conversation hopped accounts
