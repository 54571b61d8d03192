"""fastapi-taskflow's own test suite, run against taskflow through the import alias, still
gives the outcomes docs/migrating.md is written from (``expected-<version>.txt`` here).

The suite ships in fastapi-taskflow's sdist, which is not downloaded by the tests: put it in a
folder and name that folder in ``TASKFLOW_SEED_DIR``::

    pip download --no-deps --no-binary :all: -d /tmp/seed fastapi-taskflow==0.12.1
    TASKFLOW_SEED_DIR=/tmp/seed pytest tests/seed
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.seed import run

VERSIONS = sorted(
    path.name.removeprefix("expected-").removesuffix(".txt")
    for path in run.HERE.glob("expected-*.txt")
)


@pytest.fixture
def seed_dir() -> Path:
    folder = os.environ.get("TASKFLOW_SEED_DIR")
    if not folder:
        pytest.skip(
            "TASKFLOW_SEED_DIR is not set: it names a folder holding fastapi-taskflow's sdists "
            "(pip download --no-deps --no-binary :all: -d DIR fastapi-taskflow==VERSION)"
        )
    return Path(folder)


@pytest.mark.parametrize("version", VERSIONS)
def test_seed_suite_outcomes_are_the_documented_ones(version: str, seed_dir: Path) -> None:
    sdist = seed_dir / f"fastapi_taskflow-{version}.tar.gz"
    if not sdist.exists():
        pytest.skip(f"{sdist} is absent (pip download ... fastapi-taskflow=={version})")
    results = run.run_suite(sdist)
    changed = run.differences(results, run.read_expectations(run.expectations_file(version)))
    assert not changed, (
        "fastapi-taskflow's suite runs differently against taskflow now: update "
        f"tests/seed/expected-{version}.txt (python -m tests.seed.run {sdist} --update) and "
        "docs/migrating.md:\n" + "\n".join(changed)
    )
