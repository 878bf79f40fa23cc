"""`python -m bench.profile`: where each proxy's CPU goes while the overhead rows run.

Runs overhead cells (see overhead.py) with a sampling profiler attached to both mitmdumps and
sums what it saw: each proxy's on-CPU samples, the share stickyroute spends in its own code
and what grew outside it. Relative shares survive a busy machine better than wall-clock
numbers: the profiler samples what each process runs, whatever else the machine does.

  --tool perf    (default when `perf` is installed) Linux perf, cpu-clock, with Python's perf
                 trampolines (PYTHONPERFSUPPORT=1): each sample is charged to the innermost
                 Python function running, C work it called included (json, hashing, syscalls)
  --tool py-spy  whole Python stacks (entry hooks, callers), but it counts time blocked in a
                 send as busy, and its stacks are thinner
  --hook-times   also each stickyroute hook's CPU per call inside the real proxy
                 (bench/hook_timer_addon.py)
  --sticky PATH  another stickyroute entry script (an older checkout's addon/sticky.py) to
                 compare before and after on one machine

    python -m bench.profile --cells responses,chat --sizes "1 KB" --requests 2000
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from devtools.harness import STICKY_ADDON

from . import overhead

HOOK_TIMER = Path(__file__).resolve().parent / "hook_timer_addon.py"

OURS = ("stickyroute/", "addon/sticky.py")


def record(tool: str, pid: int, out: Path, rate: int) -> subprocess.Popen[bytes]:
    if tool == "perf":
        args = ["perf", "record", "-e", "cpu-clock", "-F", str(rate), "--call-graph",
                "dwarf,4096", "-p", str(pid), "-o", str(out.with_suffix(".data"))]
    else:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        args = [spy, "record", "-p", str(pid), "-r", str(rate), "-f", "raw", "-o", str(out),
                "--nonblocking"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def perf_functions(data: Path) -> Counter[str]:
    """Samples per innermost Python function (`module.function`) of a perf recording;
    "[native]" for samples with no Python frame (the interpreter between frames, GC...)."""
    text = subprocess.run(["perf", "script", "-i", str(data), "-F", "ip,sym", "--no-inline"],
                          capture_output=True, text=True, check=True).stdout
    out: Counter[str] = Counter()
    for block in text.split("\n\n"):
        frames = [line.strip() for line in block.strip().splitlines()]
        if not frames:
            continue
        py = next((f for f in frames if " py::" in f), None)
        if py is None:
            out["[native]"] += 1
            continue
        name, _, path = py.split("py::", 1)[1].partition(":")
        module = path.rsplit("/", 1)[-1].removesuffix(".py")
        where = "stickyroute" if "stickyroute/" in path else (
            "mitmproxy" if "mitmproxy/" in path else "other")
        out[f"{where} {module}.{name}"] += 1
    return out


def perf_summary(noop: Counter[str], sticky: Counter[str], top: int = 25) -> list[str]:
    tn, ts = sum(noop.values()), sum(sticky.values())
    if not tn or not ts:
        return ["no samples"]
    ours = {k: n for k, n in sticky.items() if k.startswith("stickyroute ")}
    lines = [f"on-CPU samples: no-op {tn}, stickyroute {ts} ({100 * (ts / tn - 1):+.1f}%)",
             f"in stickyroute's functions (C work they call included): {sum(ours.values())} "
             f"({100 * sum(ours.values()) / tn:.1f}% of the no-op's samples)", "",
             "stickyroute's functions (% of the no-op's samples):"]
    lines += [f"  {100 * n / tn:5.1f}%  {k.split(' ', 1)[1]}"
              for k, n in Counter(ours).most_common(top)]
    diff = Counter({k: n - noop[k] for k, n in sticky.items() if k not in ours})
    lines += ["", "other functions that grew most (% of the no-op's samples):"]
    lines += [f"  {100 * n / tn:+5.1f}%  {k}" for k, n in diff.most_common(top) if n > 0]
    return lines


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
    parser.add_argument("--tool", choices=("perf", "py-spy"),
                        default="perf" if shutil.which("perf") else "py-spy")
    parser.add_argument("--rate", type=int, default=2000, help="samples per second")
    parser.add_argument("--sticky", type=Path, default=STICKY_ADDON,
                        help="the stickyroute entry script")
    parser.add_argument("--hook-times", action="store_true",
                        help="also each hook's CPU per call inside the real proxy")
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the recordings here (noop.*, sticky.*)")
    args = parser.parse_args(argv)
    sizes = {s.strip(): args.requests for s in args.sizes.split(",")}
    cells = overhead.matrix(sizes, tuple(args.encodings.split(",")),
                            tuple(args.cells.split(",")),
                            tuple(s == "yes" for s in args.streamed.split(",")))
    with tempfile.TemporaryDirectory(prefix="stickyroute-profile-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        out = args.out or work
        out.mkdir(parents=True, exist_ok=True)
        times = out / "hook-times.json"
        env = {"STICKY_HOOK_TIMES": str(times)}
        if args.tool == "perf":
            env["PYTHONPERFSUPPORT"] = "1"  # perf names Python functions
        scripts = [args.sticky, *([HOOK_TIMER] if args.hook_times else [])]
        fake = stack.enter_context(overhead.fake_process())
        pair = overhead.Pair(fake, work, stack, sticky=scripts, env=env)
        recorders = {name: record(args.tool, pid, out / f"{name}.txt", args.rate)
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
            for rec in recorders.values():
                rec.send_signal(2)  # both write their file on SIGINT
            for rec in recorders.values():
                rec.wait(60)
            stack.close()  # the proxies stop: the hook timer writes its file
        if args.tool == "perf":
            print("\n".join(perf_summary(perf_functions(out / "noop.data"),
                                         perf_functions(out / "sticky.data"))))
        else:
            print("\n".join(summary(stacks(out / "noop.txt"), stacks(out / "sticky.txt"))))
        if args.hook_times and times.exists():
            print("\nstickyroute's hooks inside the proxy (thread CPU per call):")
            for label, (ns, calls) in sorted(json.loads(times.read_text()).items(),
                                             key=lambda kv: -kv[1][0]):
                if calls:
                    print(f"  {ns / calls / 1e3:7.1f} µs  {label} ({calls} calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
