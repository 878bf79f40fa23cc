"""mitmproxy entry script: `mitmdump -s addon/sticky.py`.

mitmproxy loads a single file with -s, so this file puts its own folder on sys.path and hands
mitmproxy the package's addons.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from stickyroute import make_addons  # noqa: E402

addons = make_addons()
