"""The Redis backend: any number of instances on any number of hosts share one history.

``backend`` (the class), ``keys`` (every key name, from one prefix), ``scripts`` (the Lua that
makes each multi-key change atomic), ``stream`` (a large save's calls streamed on one
connection), ``pack`` (commands encoded by hiredis).
"""

from __future__ import annotations

from taskflow.backends.redis.backend import RedisBackend, check_url

__all__ = ["RedisBackend", "check_url"]
