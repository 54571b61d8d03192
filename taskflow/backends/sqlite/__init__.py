"""The SQLite backend: one WAL file shared by every process on one host (never on NFS).

``backend`` (the class), ``schema`` (creation, identity, migrations), ``sql`` (the history's
statements), ``cluster`` and ``sessions`` (the cluster contract's statements), ``audit`` (the audit
trail's), ``txn``
(transactions and SQLITE_BUSY), ``wal`` (background checkpoints).
"""

from __future__ import annotations

from taskflow.backends.sqlite.backend import SqliteBackend

__all__ = ["SqliteBackend"]
