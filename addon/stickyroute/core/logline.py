"""The one line that says what happened to a request: its flow comment in mitmweb and its line
in the mitmdump log, built from the flow's RouteMeta.

It shows aliases, a session's short form, sizes, tokens and reasons — never a credential.
"""

from __future__ import annotations

from stickyroute.keys import RouteMeta

from .ledger import cache_percent
from .prices import format_micros


def describe(meta: RouteMeta) -> str:
    """What routing decided: account, session, affinity, size, edits."""
    parts = [f"{meta['endpoint']} -> {meta['account']}"]
    if meta["session"]:
        parts.append(f"session {meta['session']} ({meta['session_source']})")
    affinity = meta["affinity"]
    if meta.get("moved_from"):
        affinity += f" from {meta['moved_from']}"
    if meta.get("placed") == "warm":  # its prompt prefix was cached there already
        affinity += " (warm cache)"
    parts.append(affinity)
    if meta.get("prewarm"):
        parts.append("prewarm")
    parts.append(f"{meta['request_bytes']} B")
    if meta["injected"]:
        parts.append("+" + ",".join(meta["injected"]))
    if meta.get("dropped_reasoning"):
        parts.append(f"dropped {meta['dropped_reasoning']} encrypted reasoning item(s)")
    if meta.get("attempt"):
        parts.append(f"retry {meta['attempt']}")
    return " | ".join(parts)


def describe_result(meta: RouteMeta) -> str:
    """The request's description plus what came back: status, tokens, cache %, cost."""
    parts = [describe(meta), str(meta.get("status") or "-")]
    tokens_in = meta.get("tokens_in")
    if tokens_in is not None:
        pct = cache_percent(meta.get("tokens_cached", 0), tokens_in)
        parts.append(f"in {tokens_in} / out {meta.get('tokens_out', 0)} / cached "
                     f"{meta.get('tokens_cached', 0)} ({'-' if pct is None else f'{pct:.0f}%'})")
        parts.append(format_micros(meta.get("cost_micros", 0)) if meta.get("priced")
                     else f"unpriced model {meta.get('model') or '?'}")
    if meta.get("error"):
        parts.append(f"error {meta.get('error')}")
    if meta.get("affinity_break"):
        parts.append(f"AFFINITY BREAK {meta.get('affinity_break')}")
    return " | ".join(parts)
