"""`just bench`: cache economics, overhead and pin-table scale of stickyroute (see __main__)."""

import sys
from pathlib import Path

_ADDON = str(Path(__file__).resolve().parent.parent / "addon")
if _ADDON not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, _ADDON)
