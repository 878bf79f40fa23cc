"""stores/__init__.py: make_store builds the store `sticky_store` names."""

from stickyroute.config.settings import parse_store
from stickyroute.stores import make_store
from stickyroute.stores.base import MemoryStore
from stickyroute.stores.file import FileStore


def test_default_store_lives_in_confdir(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    store = make_store(parse_store(""), "~/.mitmproxy", "p:", 0.1)
    assert isinstance(store, FileStore)
    assert store.path == str(tmp_path / ".mitmproxy" / "stickyroute-state.json")
    assert isinstance(make_store(parse_store("memory"), "~", "p:", 0.1), MemoryStore)
