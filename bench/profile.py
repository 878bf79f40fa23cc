"""`python -m bench.profile`: where each proxy's CPU goes while the overhead rows run.

Runs overhead cells (see overhead.py) with `py-spy record -f raw` attached to both mitmdumps,
then sums the collapsed stacks: each proxy's on-CPU samples, the share stickyroute spends in
its own frames (and what they call), split by the hook that entered them, and what grew
outside them (mitmproxy's hook dispatch, streaming through a callable). Relative shares
survive a busy machine better than wall-clock numbers: py-spy samples what each process runs,
whatever else the machine does.

    python -m bench.profile --cells responses,chat --sizes "1 KB" --requests 300
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from . import overhead

OURS = ("stickyroute/", "addon/sticky.py")


def record(pid: int, out: Path, rate: int) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen([spy, "record", "-p", str(pid), "-r", str(rate), "-f", "raw",
                             "-o", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stacks(path: Path) -> Counter[tuple[str, ...]]:
    """py-spy's raw output: `frame;frame;... count` per line, outermost frame first."""
    out: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out[tuple(stack.split(";"))] += int(count)
    return out


def _short(frame: str) -> str:
    """`func (path/to/module.py:123)` -> `module.func`."""
    name, _, where = frame.partition(" (")
    module = where.rsplit("/", 1)[-1].split(".py", 1)[0]
    return f"{module}.{name}"


# Leaves py-spy counts as busy that /proc does not charge to the process: a send on loopback
# runs the receiver's TCP stack in softirq time (accounted apart), select is waiting, and pool
# threads park in a condition wait.
OFF_CPU = frozenset({"selector_events._SelectorSocketTransport.write",
                     "selectors.EpollSelector.select", "thread._worker",
                     "threading.Condition.wait"})


def on_cpu(samples: Counter[tuple[str, ...]]) -> Counter[tuple[str, ...]]:
    return Counter({k: n for k, n in samples.items() if k and _short(k[-1]) not in OFF_CPU})


def entry(stack: tuple[str, ...]) -> str | None:
    """The outermost frame of ours in a stack (None: the stack is mitmproxy's own work)."""
    for frame in stack:
        if any(mark in frame for mark in OURS):
            return _short(frame)
    return None


def _by(samples: Counter[tuple[str, ...]], key: Callable[[tuple[str, ...]], str | None]
        ) -> Counter[str]:
    out: Counter[str] = Counter()
    for stack, n in samples.items():
        k = key(stack)
        if k is not None:
            out[k] += n
    return out


def summary(noop: Counter[tuple[str, ...]], sticky: Counter[tuple[str, ...]],
            top: int = 15) -> list[str]:
    """stickyroute's on-CPU samples against the no-op's, and where the difference goes."""
    noop, sticky = on_cpu(noop), on_cpu(sticky)
    tn, ts = sum(noop.values()), sum(sticky.values())
    if not tn or not ts:
        return ["no samples"]
    extra = ts - tn
    ours = _by(sticky, entry)
    lines = [f"on-CPU samples: no-op {tn}, stickyroute {ts} ({100 * (ts / tn - 1):+.1f}%)",
             f"in stickyroute's frames (and what they call): {sum(ours.values())} "
             f"({100 * sum(ours.values()) / tn:.1f}% of the no-op's samples)", "",
             "by the outermost frame of ours (% of the no-op's samples):"]
    lines += [f"  {100 * n / tn:5.1f}%  {k}" for k, n in ours.most_common(top)]
    under = _by(Counter({k: n for k, n in sticky.items() if entry(k)}),
                lambda st: _short(st[-1]))
    lines += ["", "leaf functions under our frames:"]
    lines += [f"  {100 * n / tn:5.1f}%  {k}" for k, n in under.most_common(top)]
    rest_n = _by(noop, lambda st: _short(st[-1]))
    rest_s = _by(Counter({k: n for k, n in sticky.items() if not entry(k)}),
                 lambda st: _short(st[-1]))
    diff = Counter({k: rest_s[k] - rest_n[k] for k in rest_s})
    lines += ["", f"outside our frames: {extra - sum(ours.values()):+d} samples "
              f"({100 * (extra - sum(ours.values())) / tn:+.1f}%); leaves that grew most:"]
    lines += [f"  {100 * n / tn:+5.1f}%  {k}" for k, n in diff.most_common(top) if n > 0]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", default="responses,chat", help="APIs: responses, chat")
    parser.add_argument("--sizes", default="1 KB,100 KB", help="body sizes")
    parser.add_argument("--encodings", default="identity,zstd")
    parser.add_argument("--streamed", default="no,yes")
    parser.add_argument("--requests", type=int, default=200, help="per cell")
    parser.add_argument("--stream-tokens", type=int, default=0,
                        help="also one long SSE answer per API, of this many tokens")
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the raw stacks here (noop.txt, sticky.txt)")
    args = parser.parse_args(argv)
    sizes = {s.strip(): args.requests for s in args.sizes.split(",")}
    cells = overhead.matrix(sizes, tuple(args.encodings.split(",")),
                            tuple(args.cells.split(",")),
                            tuple(s == "yes" for s in args.streamed.split(",")))
    with tempfile.TemporaryDirectory(prefix="stickyroute-profile-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        out = args.out or work
        out.mkdir(parents=True, exist_ok=True)
        fake = stack.enter_context(overhead.fake_process())
        pair = overhead.Pair(fake, work, stack)
        spies = {name: record(pid, out / f"{name}.txt", args.rate)
                 for name, pid in pair.pids.items()}
        try:
            for cell, n in cells:
                r = overhead.measure_bodies(pair, cell, n)
                print(f"{cell.label}: CPU {r.cpu_noop_ms:.2f} -> {r.cpu_sticky_ms:.2f} ms/req "
                      f"({100 * r.cpu_added:+.1f}%)", file=sys.stderr, flush=True)
            if args.stream_tokens:
                for api in args.cells.split(","):
                    s = overhead.measure_stream(pair, fake, api, args.stream_tokens, 1)
                    print(f"SSE {api}: {s.noop_mbps:.1f} -> {s.sticky_mbps:.1f} MB/s",
                          file=sys.stderr, flush=True)
        finally:
            for spy in spies.values():
                spy.send_signal(2)  # py-spy writes its file on SIGINT
            for spy in spies.values():
                spy.wait(30)
        print("\n".join(summary(stacks(out / "noop.txt"), stacks(out / "sticky.txt"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
