"""httpx, without the command-line tool it imports on start-up.

When click and rich are installed (trustkit needs both), ``import httpx`` also imports
``httpx._main`` (its own CLI: rich, pygments, click), about 40 ms that trustkit never uses.
httpx guards that import with ``except ImportError`` and falls back to a stub, so marking the
module as absent before the first import skips it; nothing else in httpx changes.
"""

import sys

if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402

__all__ = ["httpx"]
