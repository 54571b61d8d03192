"""An import alias that lets code written for fastapi-taskflow import taskflow instead.

``fastapi_taskflow`` becomes a module that hands out ``taskflow``'s public names, and each
``fastapi_taskflow.<module>`` that has a counterpart here is that module (the same object, so
a test that patches it patches taskflow). A module without a counterpart fails to import with
a message that says so, and a name taskflow does not have fails as any missing name would:
the alias translates import paths, never behaviour. That is what lets fastapi-taskflow's own
test suite measure what differs (``python -m tests.seed.run``, see docs/migrating.md).

As a pytest plugin (``pytest -p alias``) it installs itself before collection.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from typing import Any

#: fastapi-taskflow's modules and the module here that holds the same concept.
MODULES = {
    "fastapi_taskflow.admin": "taskflow.admin",
    "fastapi_taskflow.auth": "taskflow.web.auth",
    "fastapi_taskflow.backends": "taskflow.backends",
    "fastapi_taskflow.backends.base": "taskflow.backends.base",
    "fastapi_taskflow.backends.redis": "taskflow.backends.redis",
    "fastapi_taskflow.backends.sqlite": "taskflow.backends.sqlite",
    "fastapi_taskflow.dashboard": "taskflow.dashboard",
    "fastapi_taskflow.dashboard.sse": "taskflow.dashboard.stream",
    "fastapi_taskflow.executor": "taskflow.runner",
    "fastapi_taskflow.manager": "taskflow.manager",
    "fastapi_taskflow.models": "taskflow.models",
    "fastapi_taskflow.registry": "taskflow.tasks",
    "fastapi_taskflow.router": "taskflow.web.api",
    "fastapi_taskflow.snapshot": "taskflow.persistence",
    "fastapi_taskflow.store": "taskflow.persistence.store",
    "fastapi_taskflow.wrapper": "taskflow.background",
}
ROOT = "fastapi_taskflow"


class _Root(types.ModuleType):
    """``fastapi_taskflow`` itself: taskflow's top-level names, and no files of its own."""

    def __getattr__(self, name: str) -> Any:
        taskflow = importlib.import_module("taskflow")
        try:
            return getattr(taskflow, name)
        except AttributeError:
            raise AttributeError(
                f"module {ROOT!r} has no attribute {name!r} (taskflow has no such name)"
            ) from None


class AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``fastapi_taskflow`` and its modules to taskflow's (see :data:`MODULES`)."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != ROOT and not fullname.startswith(ROOT + "."):
            return None
        if fullname != ROOT and fullname not in MODULES:
            # Raised here, so that no other finder loads a second copy of a taskflow file
            # under fastapi-taskflow's name.
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (fastapi-taskflow's {fullname[len(ROOT) + 1 :]!r}"
                " has no counterpart in taskflow)",
                name=fullname,
            )
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        if spec.name == ROOT:
            root = _Root(ROOT, "fastapi-taskflow's names, served by taskflow")
            root.__path__ = []  # a package whose modules only this finder provides
            return root
        module = importlib.import_module(MODULES[spec.name])
        spec.loader_state = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        # The import system has just set the alias's spec on the real module: put its own back,
        # so the module still says where it lives.
        alias = module.__spec__
        if alias is not None and alias.loader_state is not None:
            module.__spec__ = alias.loader_state


def install() -> None:
    """Put the alias first on ``sys.meta_path`` (before an installed fastapi-taskflow)."""
    if not any(isinstance(finder, AliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder())


def pytest_configure(config: Any) -> None:
    install()
