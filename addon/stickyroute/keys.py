"""Every key stickyroute keeps in `flow.metadata`, and the shape of what it keeps there.

mitmproxy saves metadata with a flow (`-w`, mitmweb exports): nothing here may hold a
credential, and every value must stay plain JSON-able data.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

META = "stickyroute"  # a RouteMeta once routed; a RefusedMeta when the proxy answered itself
CLIENT = "stickyroute.client"  # the name of the gate client that authenticated
CLIENT_ID = "stickyroute.client_id"  # the client namespace session keys use
SIGNED = "stickyroute.signed"  # [alias, header names] routing set on the request (guard masks)
RETRY = "stickyroute.retry"  # a RetryNote on a flow failover sends again


class RetryNote(TypedDict):
    of: str  # the id of the flow whose answer failed
    attempt: int  # 1, 2, ...
    exclude: list[str]  # aliases already tried
    refreshed: NotRequired[list[str]]  # aliases whose login was refreshed for it: once only


class Retried(TypedDict):
    served_by: str | None
    attempts: int
    after: list[str]  # "alias: reason" per failed attempt


class AnsweredMeta(TypedDict):
    answered: str  # what the proxy answered itself (e.g. "workspace discovery")


class RefusedMeta(TypedDict):
    error: str  # the error code the client got
    message: str


class RouteMeta(TypedDict):
    """What routing decided (set by the request hook), then what came back (set on the way
    back). It is the flow's comment and log line, and what tests and mitmweb read."""

    account: str
    provider: str
    endpoint: str  # core.classify.Endpoint value
    affinity: str  # core.choose.Affinity value
    session: str | None  # SessionId.short
    session_source: str | None
    session_key: str | None
    moved_from: str | None
    placed: str | None  # how a new pick was made: warm | headroom | load | <strategy>
    injected: list[str]
    request_bytes: int
    client: str
    hard: bool
    dropped_reasoning: int
    attempt: int
    inflight: NotRequired[bool]  # counted in the ledger until failover takes it off
    token_fingerprint: NotRequired[str]  # a subscription login's access token, by fingerprint
    # ---- the way back (follow.py, failover.py) ----
    outcome: NotRequired[str]  # core.outcome.Kind value
    retried: NotRequired[Retried]
    status: NotRequired[int | None]
    response_id: NotRequired[str | None]
    model: NotRequired[str | None]
    error: NotRequired[str | None]
    tokens_in: NotRequired[int | None]
    tokens_out: NotRequired[int]
    tokens_cached: NotRequired[int]
    cache_ratio: NotRequired[float | None]  # cached share of tokens_in (0..1)
    cost_micros: NotRequired[int]
    priced: NotRequired[bool]
    affinity_break: NotRequired[str | None]
    turns: NotRequired[int]  # WebSocket: real turns on the connection (prewarms not counted)
    prewarm: NotRequired[bool]  # WebSocket: the last client frame was a prewarm (generate false)
