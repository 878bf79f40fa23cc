"""Bench-only addon: each stickyroute hook's own CPU time, measured inside a real mitmdump.

Load it after addon/sticky.py (`python -m bench.profile --hook-times` does). At `running` it
wraps the hooks of stickyroute's addons (behind its Dispatch) and the SSE stream callable
with thread-CPU timers; at `done` it writes their totals to the JSON file named by
$STICKY_HOOK_TIMES. The in-process figures of bench.hooks run hot in the CPU's caches; these
are what the hooks cost between mitmproxy's own work. Each timer adds ~1 µs of its own.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from collections.abc import Callable
from typing import Any

from mitmproxy import ctx, hooks

TIMED = ("request", "responseheaders", "response", "error")
totals: dict[str, list[int]] = {}


def timed(label: str, f: Callable[..., Any]) -> Callable[..., Any]:
    totals[label] = [0, 0]  # ns, calls
    if inspect.iscoroutinefunction(f):
        async def timed_async(*args: Any) -> Any:
            t0 = time.thread_time_ns()
            try:
                return await f(*args)
            finally:
                totals[label][0] += time.thread_time_ns() - t0
                totals[label][1] += 1
        return timed_async

    def timed_sync(*args: Any) -> Any:
        t0 = time.thread_time_ns()
        try:
            return f(*args)
        finally:
            totals[label][0] += time.thread_time_ns() - t0
            totals[label][1] += 1
    return timed_sync


class HookTimer:
    def running(self) -> None:
        from stickyroute.addons import follow
        from stickyroute.addons.dispatch import Dispatch

        dispatch = ctx.master.addons.get("stickyroute")
        for part in dispatch.parts:
            for event in TIMED:
                hook = getattr(part, event, None)
                if hook is not None:
                    setattr(part, event, timed(f"{type(part).__name__}.{event}", hook))
        again = Dispatch(dispatch.parts)  # bind the timed hooks
        for event in hooks.all_hooks:
            if event in vars(again):
                setattr(dispatch, event, vars(again)[event])
        follow._Stream.__call__ = timed("SSE piece", follow._Stream.__call__)  # type: ignore[method-assign]

    def done(self) -> None:
        path = os.environ.get("STICKY_HOOK_TIMES")
        if path:
            with open(path, "w") as f:
                json.dump(totals, f)


addons = [HookTimer()]
