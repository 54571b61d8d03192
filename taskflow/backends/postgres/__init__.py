"""The PostgreSQL backend: any number of instances on any number of hosts share one database.

``backend`` (the class and its SQL), ``schema`` (tables, indexes, migrations under an advisory
lock). Needs the ``postgres`` extra: ``pip install 'taskflow-kit[postgres]'``.
"""

from __future__ import annotations

from taskflow.backends.postgres.backend import PostgresBackend

__all__ = ["PostgresBackend"]
