"""The addon's one way to log: module loggers under `stickyroute`, every line prefixed once.

mitmdump prints a record's message only, so the prefix is what tells a reader which lines are
ours. No line may carry a credential: callers log aliases, session short forms and reasons.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

PREFIX = "stickyroute: "


class _Prefixed(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: MutableMapping[str, Any]
                ) -> tuple[Any, MutableMapping[str, Any]]:
        return f"{PREFIX}{msg}", kwargs


Logger = logging.LoggerAdapter[logging.Logger]


def get_logger(name: str) -> Logger:
    """The logger of one module (`get_logger(__name__)`)."""
    return _Prefixed(logging.getLogger(name), {})
