"""Injected faults: the next `count` requests of an account fail in a chosen way."""

from __future__ import annotations

from dataclasses import dataclass

ERROR_KINDS = ("429", "quota", "401", "500", "529")
KINDS = (*ERROR_KINDS, "drop", "slow", "stall")


@dataclass
class Fault:
    kind: str
    account: str | None = None  # None: any account
    count: int = 1
    retry_after: float | None = None
    delay: float = 0.0
    path: str | None = None  # only requests whose path starts with this

    def matches(self, account: str | None, path: str) -> bool:
        if self.account is not None and self.account != account:
            return False
        return self.path is None or path.startswith(self.path)


def make_fault(kind: str, account: str | None = None, count: int = 1,
               retry_after: float | None = None, delay: float = 0.0,
               path: str | None = None) -> Fault:
    kind = str(kind)
    if kind not in KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(KINDS)}")
    if count < 1:
        raise ValueError("fault count must be >= 1")
    return Fault(kind, account, int(count), retry_after, float(delay), path)


class FaultTable:
    """First matching fault wins; callers hold the upstream's lock."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        self._faults.append(fault)

    def clear(self) -> None:
        self._faults.clear()

    def take(self, account: str | None, path: str, *, api: bool) -> Fault | None:
        """Consume one use of the first fault for this request.

        Non-API paths (the echo endpoint) only get faults that name their path explicitly.
        """
        for fault in self._faults:
            if not api and fault.path is None:
                continue
            if fault.matches(account, path):
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return fault
        return None
