"""Shared builders for unit tests: a fake clock, flows, the addons around one State."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils

from stickyroute import Addons, build
from stickyroute.state import State

ACCOUNTS = """\
accounts:
  - alias: oa
    provider: openai
    api_key: sk-acct-oa
  - alias: ob
    provider: openai
    api_key: sk-acct-ob
  - alias: an
    provider: anthropic
    api_key: sk-ant-acct
  - alias: cg
    provider: chatgpt
    api_key: tok
    account_id: id-1
    enabled: false
"""


class Clock:
    """A clock tests move by hand (`clock.t += 61`)."""

    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def addons(clock: Clock | None = None) -> Addons:
    """stickyroute's addons around a fresh State on this clock (not configured yet)."""
    return build(State(clock=clock or Clock()))


@contextmanager
def configured(accounts: Path, clock: Clock | None = None, **options: Any
               ) -> Iterator[tuple[Addons, taddons.context]]:
    """The addons loaded into a test mitmproxy context, configured with this accounts file."""
    a = addons(clock)
    with taddons.context(*a) as tctx:
        tctx.configure(a.options, sticky_accounts=str(accounts), **options)
        yield a, tctx


def flow(host: str = "api.openai.com", path: str = "/v1/responses", body: Any = None,
         headers: Iterable[tuple[str, str]] = (), scheme: str = "https",
         raw: bytes | None = None) -> http.HTTPFlow:
    """A live request flow from a client that sent its own placeholder key."""
    req = tutils.treq(host=host, port=443, scheme=scheme.encode(), path=path.encode(),
                      method=b"POST", content=b"")
    req.headers.clear()
    req.headers["authorization"] = "Bearer sk-client-placeholder"
    req.headers["content-type"] = "application/json"
    for k, v in headers:
        req.headers[k] = v
    if raw is not None:
        req.raw_content = raw
    elif body is not None:
        req.content = json.dumps(body).encode()
    return tflow.tflow(req=req)
