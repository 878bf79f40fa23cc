"""`python -m bench.hooks`: the addons' own CPU per request, in process, without sockets.

The overhead rows (overhead.py) measure whole mitmdump processes, which a busy machine makes
noisy. This drives the same requests and answers (the fake upstream's own reply builders)
through mitmproxy's AddonManager in one process, the way the proxy core does (requestheaders,
request, responseheaders, the stream callable per chunk, response; an update hook after each),
once with the no-op addon and once with stickyroute's addons, and reports the thread CPU time
of each per request. Thread CPU time does not count time other processes take, so the
difference stays put on a shared machine; mitmproxy's own relaying is not in it, so compare
it with the no-op proxy's CPU per request from the overhead rows.

    python -m bench.hooks --requests 2000
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import zstandard
from mitmproxy import hooks, http
from mitmproxy.addons.termlog import TermLogHandler
from mitmproxy.proxy.layers.http._hooks import (
    HttpRequestHeadersHook,
    HttpRequestHook,
    HttpResponseHeadersHook,
    HttpResponseHook,
)
from mitmproxy.test import taddons, tflow, tutils

from devtools.harness import accounts_file
from fakeapi.accounts import AccountState
from fakeapi.openai_api import chat, responses
from fakeapi.wire import Call

from .noop_addon import Noop
from .overhead import KEYS, OUTPUT_TOKENS, SIZES, Cell, make_body, matrix, session_headers


@dataclass
class Exchange:
    """One request and its answer, as bytes on the wire."""

    cell: Cell
    request_headers: dict[str, str]
    request_body: bytes
    response_headers: dict[str, str]
    response_body: bytes  # JSON answers
    events: list[bytes]  # SSE answers, one chunk per event as the fake flushes them


def exchange(cell: Cell, session: int) -> Exchange:
    raw = make_body(SIZES[cell.size], session, cell.api, cell.streamed)
    body = json.loads(raw)
    acct = AccountState("acct-0", b"secret", 300.0, time.monotonic)
    answer = (responses if cell.api == "responses" else chat)(
        Call(body, "openai", OUTPUT_TOKENS[cell.streamed], cell.streamed), acct)
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench-0",
               **session_headers(cell.api, session)}
    wire = raw
    if cell.encoding == "zstd":
        wire = zstandard.ZstdCompressor().compress(raw)
        headers["content-encoding"] = "zstd"
    content_type = "text/event-stream; charset=utf-8" if cell.streamed else "application/json"
    return Exchange(cell, headers, wire, {"content-type": content_type, **answer.headers},
                    b"" if cell.streamed else json.dumps(answer.body).encode(),
                    answer.events or [])


def make_flow(ex: Exchange) -> http.HTTPFlow:
    path = b"/v1/responses" if ex.cell.api == "responses" else b"/v1/chat/completions"
    req = tutils.treq(host="api.openai.com", port=443, scheme=b"https", path=path,
                      method=b"POST", content=b"")
    req.headers.clear()
    for name, value in ex.request_headers.items():
        req.headers[name] = value
    req.raw_content = ex.request_body
    flow = tflow.tflow(req=req)
    flow.live = True
    flow.response = None
    return flow


def make_response(ex: Exchange) -> http.Response:
    resp = tutils.tresp(status_code=200, content=b"")
    resp.headers.clear()
    for name, value in ex.response_headers.items():
        resp.headers[name] = value
    resp.raw_content = None if ex.cell.streamed else ex.response_body
    return resp


async def one(master: Any, flow: http.HTTPFlow, response: http.Response,
              ex: Exchange) -> None:
    """The hooks mitmproxy's HTTP layer fires for one request, in its order."""
    addons = master.addons
    await addons.handle_lifecycle(HttpRequestHeadersHook(flow))
    await addons.handle_lifecycle(HttpRequestHook(flow))
    flow.response = response
    await addons.handle_lifecycle(HttpResponseHeadersHook(flow))
    stream = flow.response.stream
    if callable(stream):
        for chunk in ex.events:
            stream(chunk)
        stream(b"")
    await addons.handle_lifecycle(HttpResponseHook(flow))


HOOKS = ("requestheaders", "request", "responseheaders", "response")


class Timed:
    """Wraps the HTTP hooks of addons to sum each one's thread CPU time (ns)."""

    def __init__(self, addons: list[Any]) -> None:
        self.ns: dict[str, int] = {}
        for addon in addons:
            for name in HOOKS:
                hook = getattr(addon, name, None)
                if hook is not None:
                    setattr(addon, name, self._wrap(f"{type(addon).__name__}.{name}", hook))

    def _wrap(self, label: str, hook: Callable[..., Any]) -> Callable[..., Any]:
        self.ns[label] = 0
        if inspect.iscoroutinefunction(hook):
            async def timed_async(*args: Any) -> Any:
                t0 = time.thread_time_ns()
                try:
                    return await hook(*args)
                finally:
                    self.ns[label] += time.thread_time_ns() - t0
            return timed_async

        def timed(*args: Any) -> Any:
            t0 = time.thread_time_ns()
            try:
                return hook(*args)
            finally:
                self.ns[label] += time.thread_time_ns() - t0
        return timed


async def measure(addons: list[Any], exchanges: list[Exchange], n: int, rounds: int,
                  configure: Callable[[Any], None] | None = None) -> float:
    """Median over rounds of thread CPU µs per request."""
    holder = SimpleNamespace(addons=addons)  # as mitmproxy's script loader nests a script's
    with taddons.context(holder) as tctx:
        if configure is not None:
            configure(tctx)
        await tctx.master.addons.trigger_event(hooks.RunningHook())  # as mitmdump does
        per_round = []
        for _ in range(rounds):
            exs = [exchanges[i % len(exchanges)] for i in range(n)]
            flows = [(make_flow(ex), make_response(ex), ex) for ex in exs]
            t0 = time.thread_time_ns()
            for flow, response, ex in flows:
                await one(tctx.master, flow, response, ex)
                await asyncio.sleep(0)  # what a log line queued (mitmproxy's add_log hook) runs
            per_round.append((time.thread_time_ns() - t0) / n / 1e3)
    return statistics.median(per_round)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hooks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="per round and cell")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="1 KB,100 KB")
    parser.add_argument("--encodings", default="identity,zstd")
    parser.add_argument("--cells", default="responses,chat")
    parser.add_argument("--streamed", default="no,yes")
    parser.add_argument("--per-hook", action="store_true",
                        help="also each stickyroute hook's own µs per request (their sum "
                             "leaves out mitmproxy's dispatch and the stream callable)")
    args = parser.parse_args(argv)
    handler = TermLogHandler(open(os.devnull, "w"))  # the log path, minus the pipe write
    handler.install()
    logging.getLogger().setLevel(logging.INFO)
    cells = matrix({s.strip(): 1 for s in args.sizes.split(",")},
                   tuple(args.encodings.split(",")), tuple(args.cells.split(",")),
                   tuple(s == "yes" for s in args.streamed.split(",")))
    asyncio.run(_main(args, cells))
    handler.uninstall()
    return 0


async def _main(args: argparse.Namespace, cells: list[tuple[Cell, int]]) -> None:
    from stickyroute import build
    from stickyroute.addons.dispatch import Dispatch
    from stickyroute.state import State

    with tempfile.TemporaryDirectory() as tmp:
        accounts = accounts_file(Path(tmp) / "accounts.yaml", KEYS)
        print("| cell | no-op µs/req | stickyroute µs/req | added µs/req |")
        print("|---|---|---|---|")
        for cell, _ in cells:
            exchanges = [exchange(cell, s) for s in range(8)]
            noop = await measure([Noop()], exchanges, args.requests, args.rounds)
            sticky_addons = build(State())

            def configure(tctx: Any, a: Any = sticky_addons) -> None:
                tctx.options.confdir = tmp  # the file store's state goes there
                tctx.configure(a.options, sticky_accounts=str(accounts), sticky_admin="")

            timed = Timed(list(sticky_addons)) if args.per_hook else None
            # as addon/sticky.py hands them over (make_addons): behind one Dispatch
            sticky = await measure([Dispatch(sticky_addons)], exchanges, args.requests,
                                   args.rounds, configure)
            print(f"| {cell.label} | {noop:.1f} | {sticky:.1f} | {sticky - noop:.1f} |",
                  flush=True)
            if timed is not None:
                total = args.requests * args.rounds
                print("    " + ", ".join(f"{k} {v / total / 1e3:.1f}" for k, v in
                                         sorted(timed.ns.items(), key=lambda kv: -kv[1])
                                         if v), flush=True)


if __name__ == "__main__":
    sys.exit(main())
