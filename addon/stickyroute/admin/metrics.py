"""Prometheus metrics, read from the ledger and pin table at scrape time.

A custom collector: the hot path keeps its plain counters (ledger.py) and pays nothing for
metrics; a scrape walks the accounts once. Labels are aliases, providers and states only —
never a credential.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from stickyroute.state import State

STATES = ("healthy", "cooling", "disabled")
AFFINITIES = ("new", "hit", "moved", "unpinned")  # always exported, so rates start at 0


class StickyCollector:
    def __init__(self, state: State) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        s = self.state
        now = s.clock()
        requests = CounterMetricFamily(
            "stickyroute_requests", "Requests routed, by account and affinity outcome "
            "(new, hit, moved, unpinned).", labels=["account", "affinity"])
        tokens = CounterMetricFamily(
            "stickyroute_tokens", "Tokens reported by the provider, by account and kind "
            "(input, output, cached input).", labels=["account", "kind"])
        cost = CounterMetricFamily("stickyroute_cost_usd", "Estimated cost in US dollars.",
                                   labels=["account"])
        breaks = CounterMetricFamily(
            "stickyroute_affinity_breaks", "Conversations whose cache or state was lost to a "
            "move or an upstream miss.", labels=["account"])
        errors = CounterMetricFamily("stickyroute_errors", "Upstream errors seen.",
                                     labels=["account"])
        pins = GaugeMetricFamily("stickyroute_pins", "Live session pins.", labels=["account"])
        inflight = GaugeMetricFamily("stickyroute_inflight", "Requests in flight.",
                                     labels=["account"])
        state = GaugeMetricFamily("stickyroute_account_state",
                                  "1 for the account's current health state.",
                                  labels=["account", "provider", "state"])
        cooldown = GaugeMetricFamily("stickyroute_cooldown_seconds",
                                     "Seconds left of the account's cooldown (0: none).",
                                     labels=["account"])
        refreshes = CounterMetricFamily(
            "stickyroute_login_refreshes", "Subscription logins refreshed by this proxy.",
            labels=["account"])
        adopted = CounterMetricFamily(
            "stickyroute_login_adopted", "Subscription login tokens taken from another proxy "
            "or from the login file instead of a refresh.", labels=["account"])
        refresh_failures = CounterMetricFamily(
            "stickyroute_login_refresh_failures", "Failed refreshes of subscription logins.",
            labels=["account"])
        expires_in = GaugeMetricFamily(
            "stickyroute_login_expires_in_seconds", "Seconds until the login's access token "
            "expires (negative: expired).", labels=["account"])
        revoked = GaugeMetricFamily(
            "stickyroute_login_revoked", "1 when the login is dead (log in again) or missing.",
            labels=["account"])
        used = GaugeMetricFamily(
            "stickyroute_account_window_used_ratio", "Share used (0..1) of the account's usage "
            "window of this length (5-hour, weekly, per-minute), as its provider last said.",
            labels=["account", "window_minutes"])
        resets = GaugeMetricFamily(
            "stickyroute_account_window_reset_seconds", "Seconds until that window resets "
            "(only windows whose reset time the provider gave).",
            labels=["account", "window_minutes"])
        per_alias = s.pins.sessions_per_alias()
        for account in s.accounts.accounts:
            alias = account.alias
            stats = s.ledger[alias]
            for affinity in sorted({*AFFINITIES, *stats.affinity}):
                requests.add_metric([alias, affinity], stats.affinity.get(affinity, 0))
            tokens.add_metric([alias, "input"], stats.tokens_in)
            tokens.add_metric([alias, "output"], stats.tokens_out)
            tokens.add_metric([alias, "cached"], stats.tokens_cached)
            cost.add_metric([alias], stats.cost_micros / 1e6)
            breaks.add_metric([alias], stats.affinity_breaks)
            errors.add_metric([alias], stats.errors)
            pins.add_metric([alias], per_alias.get(alias, 0))
            inflight.add_metric([alias], stats.inflight)
            health = s.health.describe(alias, now)
            for name in STATES:
                state.add_metric([alias, account.provider, name],
                                 1 if health.state == name else 0)
            cooldown.add_metric([alias], max(0.0, health.until - now) if health.until else 0.0)
            if account.oauth is not None:
                login = s.logins.get(alias)
                revoked.add_metric([alias], 1 if login is None or login.revoked else 0)
                if login is not None:
                    refreshes.add_metric([alias], login.refreshes)
                    adopted.add_metric([alias], login.adopted)
                    refresh_failures.add_metric([alias], login.refresh_failures)
                    if login.tokens.expires_at is not None:
                        expires_in.add_metric([alias], login.tokens.expires_at - now)
            for w in s.windows.windows(alias, now):
                if w.limit:  # one model's limit: the labels name account-wide windows only
                    continue
                used.add_metric([alias, str(w.minutes)], w.used_percent / 100)
                if w.resets_at is not None:
                    resets.add_metric([alias, str(w.minutes)], max(0.0, w.resets_at - now))
        yield from (requests, tokens, cost, breaks, errors, pins, inflight, state, cooldown,
                    refreshes, adopted, refresh_failures, expires_in, revoked, used, resets)
        yield GaugeMetricFamily("stickyroute_sessions", "Live session pins, all accounts.",
                                value=len(s.pins))
        sweeps = s.sweeps
        yield SummaryMetricFamily("stickyroute_sweep_duration_seconds",
                                  "Time spent sweeping expired pins.",
                                  count_value=sweeps.count, sum_value=sweeps.seconds)
        yield CounterMetricFamily("stickyroute_swept_pins", "Pins removed by sweeps.",
                                  value=sweeps.removed)
        yield GaugeMetricFamily("stickyroute_start_time_seconds",
                                "When the addon started (Unix time).", value=s.started)


def registry_for(state: State) -> CollectorRegistry:
    """A private registry (not the global one: a script reload would register twice)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StickyCollector(state))
    return registry


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
