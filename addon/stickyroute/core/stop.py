"""What a stop of the proxy means for requests: the phases, the drain, and how a connection cut
by the stop is told apart from an account's failure.

A stop goes RUNNING -> DRAINING (from the moment mitmproxy starts shutting down: nothing new is
routed, requests already upstream get a grace period) -> SEALED (the final save is being made:
from here on nothing may change what the next start restores). A connection cut or cancelled
while the proxy stops is no outcome of the account: never a cooldown, a health event, a retry
or a move. Pure and clock-free: every call takes `now`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .errors import NoAccount
from .outcome import Kind, Outcome

STOPPED_BY_SHUTDOWN = "stopped by shutdown"
REFUSE_RETRY_AFTER = 1  # seconds; the restart is usually quicker than the clients' backoff


class Phase(StrEnum):
    RUNNING = "running"
    DRAINING = "draining"  # no new routing; requests already upstream may finish
    SEALED = "sealed"  # the final save is made now: nothing routed or learned may follow it


class Step(StrEnum):
    """What the drain does next."""

    WAIT = "wait"  # requests are in flight and the grace period has time left
    CUT = "cut"  # the grace period is over: close what is still upstream
    SEAL = "seal"  # nothing in flight: make the final save


@dataclass
class Stop:
    phase: Phase = Phase.RUNNING
    began: float | None = None

    @property
    def stopping(self) -> bool:
        return self.phase is not Phase.RUNNING

    def begin(self, now: float) -> bool:
        """The shutdown started; True only the first time (the caller says so once)."""
        if self.phase is not Phase.RUNNING:
            return False
        self.phase, self.began = Phase.DRAINING, now
        return True

    def seal(self, now: float) -> None:
        self.begin(now)
        self.phase = Phase.SEALED

    def next_step(self, inflight: int, grace: float, now: float) -> Step:
        if inflight <= 0:
            return Step.SEAL
        began = self.began if self.began is not None else now
        return Step.WAIT if now < began + grace else Step.CUT


def connection_outcome(msg: str, answered: bool, stopping: bool) -> tuple[Outcome, bool]:
    """(outcome, counts as the account's error) for a flow that ended in mitmproxy's error hook.

    While the proxy stops, mitmproxy's own cancellations read like any dropped connection
    ("server closed connection", "connection cancelled", "Client disconnected."): the phase,
    not the message, says whose fault it was.
    """
    short = msg[:80]
    if stopping:
        return Outcome(Kind.STOPPED, f"{STOPPED_BY_SHUTDOWN} ({short})"), False
    if answered or "client" in msg.lower() or "killed" in msg:
        return Outcome(Kind.NEUTRAL, f"client gone ({short})"), False
    return Outcome(Kind.CONNECTION, f"connection error ({short})"), True


def refusal(provider: str) -> NoAccount:
    """The answer to a request that arrives while the proxy stops: nothing is sent upstream and
    nothing is pinned, so the client's retry after the restart finds the state it left."""
    return NoAccount(provider, "stickyroute: the proxy is stopping; retry in a moment (it "
                     "restarts with every conversation's account)", status=503,
                     code="proxy_stopping", retry_after=REFUSE_RETRY_AFTER)
