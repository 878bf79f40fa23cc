"""admin/views.py: finding sessions by full key, value or short form."""

from stickyroute.admin import views
from tests.helpers import route_session


def test_find_sessions_prefers_exact_key(admin_env):
    sticky, _, _, _ = admin_env
    for value in ("abcdefgh", "zzabcdefgh", "xx12345678", "yy12345678"):
        route_session(sticky, value)
    key = next(p.session for p in sticky.state.pins if p.session.endswith("/abcdefgh"))
    assert [p.session for p in views.find_sessions(sticky.state, key)] == [key]
    assert [p.session for p in views.find_sessions(sticky.state, "abcdefgh")] == [key]
    assert len(views.find_sessions(sticky.state, "12345678")) == 2  # the short form: both
    assert views.find_sessions(sticky.state, "2345678") == []
    assert views.find_sessions(sticky.state, "gh") == []
