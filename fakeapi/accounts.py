"""Per-account server-side state of the fake: prompt cache, stored responses, sealed reasoning.

Nothing here is shared between accounts: that isolation is exactly what the proxy under
test must respect. Callers hold the upstream's lock; the clock is injected.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field

BLOCK_TOKENS = 128
MIN_CACHED_TOKENS = 1024
BLOCK_CHARS = BLOCK_TOKENS * 4  # see prompt.CHARS_PER_TOKEN
_SWEEP_EVERY = 4096  # prefix entries added between expiry sweeps


@dataclass(frozen=True)
class StoredResponse:
    id: str
    prompt_text: str  # full canonical prompt, previous chain included
    output_text: str  # canonical text of the output, as a follow-up turn would carry it

    @property
    def chain_text(self) -> str:
        return self.prompt_text + self.output_text


@dataclass
class AccountState:
    name: str
    secret: bytes
    cache_ttl: float
    clock: Callable[[], float]
    responses: dict[str, StoredResponse] = field(default_factory=dict)
    _prefixes: dict[str, float] = field(default_factory=dict)  # prefix hash -> last seen
    _added: int = 0

    def use_cache(self, text: str) -> int:
        """Cached tokens for this prompt, then remember all its block prefixes."""
        now = self.clock()
        hashes = _block_prefix_hashes(text)
        cached = 0
        for i in range(len(hashes), 0, -1):
            if i * BLOCK_TOKENS < MIN_CACHED_TOKENS:
                break
            seen = self._prefixes.get(hashes[i - 1])
            if seen is not None and now - seen <= self.cache_ttl:
                cached = i * BLOCK_TOKENS
                break
        for h in hashes:
            self._prefixes[h] = now
        self._added += len(hashes)
        if self._added >= _SWEEP_EVERY:
            self._sweep(now)
        return cached

    def _sweep(self, now: float) -> None:
        self._added = 0
        self._prefixes = {h: t for h, t in self._prefixes.items() if now - t <= self.cache_ttl}

    def seal(self, item_id: str) -> str:
        """Opaque encrypted_content that only this account can verify."""
        mac = hmac.new(self.secret, f"{self.name}|{item_id}".encode(), hashlib.sha256).hexdigest()
        blob = json.dumps({"acct": self.name, "id": item_id, "mac": mac}).encode()
        return base64.b64encode(blob).decode()

    def verify(self, sealed: object) -> bool:
        try:
            data = json.loads(base64.b64decode(str(sealed), validate=True))
            expected = self.seal(str(data["id"]))
        except (ValueError, KeyError, TypeError):
            return False
        return hmac.compare_digest(expected, str(sealed))


def _block_prefix_hashes(text: str) -> list[str]:
    """Hash of every whole-block prefix of text, shortest first."""
    hasher = hashlib.sha256()
    out: list[str] = []
    # Blocks are measured in characters of the text, hashed as its bytes.
    for i in range(len(text) // BLOCK_CHARS):
        hasher.update(text[i * BLOCK_CHARS : (i + 1) * BLOCK_CHARS].encode("utf-8", "replace"))
        out.append(hasher.copy().hexdigest())
    return out
