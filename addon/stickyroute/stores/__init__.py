"""Where pins and the state that goes with them outlive one process: memory, a file, Redis."""

from __future__ import annotations

from stickyroute.config.settings import StoreSpec

from .base import MemoryStore, Store
from .file import FileStore
from .redis import RedisStore


def make_store(spec: StoreSpec, confdir: str, prefix: str, timeout: float) -> Store:
    """The store sticky_store names (not opened yet)."""
    if spec.kind == "redis":
        return RedisStore(spec.target, prefix, timeout=timeout)
    if spec.kind == "file":
        return FileStore(spec.path_in(confdir))
    return MemoryStore()
