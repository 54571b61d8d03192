"""The reference app (deploy/app.py) on a backend that loses finished tasks, for the load tests'
own tests only: they check that the load tests notice (tests/integration/test_loadtest.py).

The backend acknowledges every write but stores only live records, so finished tasks silently
never reach the shared history: the instance that ran a task still shows it finished (from its
memory), every other instance shows it pending or running forever. Served by the local runner
with ``python -m deploy.runner up --app tests.integration.apps.lossy:app``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskflow.backends import SnapshotBackend, backend_from_url
from taskflow.models import TaskRecord
from taskflow.settings import Settings


def lossy_backend(url: str) -> SnapshotBackend:
    """The backend ``url`` names, except that ``save`` drops finished records."""
    base: Any = type(backend_from_url(url))

    class LossyBackend(base):  # type: ignore[misc, valid-type]
        async def save(self, records: Sequence[TaskRecord]) -> None:
            await super().save([r for r in records if not r.status.finished])

        def describe(self) -> str:
            return f"{super().describe()} (test backend: drops finished tasks)"

    backend: SnapshotBackend = LossyBackend.from_url(url)
    return backend


_manager_kwargs = Settings.manager_kwargs


def _lossy_manager_kwargs(self: Settings) -> dict[str, Any]:
    kwargs = _manager_kwargs(self)
    kwargs["snapshot_backend"] = lossy_backend(kwargs["snapshot_backend"])
    return kwargs


# deploy.app builds its TaskManager from Settings.manager_kwargs() when it is imported.
Settings.manager_kwargs = _lossy_manager_kwargs  # type: ignore[method-assign]

from deploy.app import app  # noqa: E402

__all__ = ["app"]
