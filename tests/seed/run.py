"""Run fastapi-taskflow's own test suite against taskflow, through the import alias.

    python -m tests.seed.run fastapi_taskflow-0.12.1.tar.gz [--update | --baseline]

The sdist (``pip download --no-deps --no-binary :all: fastapi-taskflow==0.12.1``) ships the
suite. Its ``tests/`` folder and its pytest settings are copied to a scratch folder (never its
package: ``fastapi_taskflow`` must come from :mod:`tests.seed.alias`), renamed ``seed_tests``
so as not to shadow this project's ``tests`` package, and run with this checkout first on
``sys.path``. The outcome of every test is compared with ``expected-<version>.txt`` beside this
file, which says for each one why it fails here (the tags are explained in docs/migrating.md);
``--update`` rewrites that file's outcomes, keeping the reasons already written;
``--baseline`` runs the suite against the seed's own package instead, to see what fails there
too in this environment.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
#: Per seed test: a hung test (waiting for something taskflow never does) fails instead.
TEST_TIMEOUT = 20
OUTCOMES = ("passed", "failed", "noimport", "skipped")
#: Reason given to a test whose outcome is new to the expectations file.
UNEXPLAINED = "?"


def seed_version(sdist: Path) -> str:
    match = re.fullmatch(r"fastapi_taskflow-(.+)\.tar\.gz", sdist.name)
    if match is None:
        raise SystemExit(f"{sdist}: not a fastapi_taskflow-<version>.tar.gz sdist")
    return match.group(1)


def expectations_file(version: str) -> Path:
    return HERE / f"expected-{version}.txt"


def unpack(sdist: Path, scratch: Path) -> None:
    """Into ``scratch``: the suite as ``seed_tests/``, its pytest settings, and the seed's own
    package under ``seed_package/`` (only to list its tests, see :func:`seed_test_ids`)."""
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            parts = Path(member.name).parts
            if len(parts) < 2 or not member.isfile() or ".." in parts:
                continue
            if parts[1] == "tests":
                target = scratch / "seed_tests" / Path(*parts[2:])
            elif parts[1] == "fastapi_taskflow":
                target = scratch / "seed_package" / Path(*parts[1:])
            elif parts[1:] == ("pyproject.toml",):
                target = scratch / "pyproject.toml"
            else:
                continue
            source = archive.extractfile(member)
            assert source is not None
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read())
    if not (scratch / "seed_tests").is_dir():
        raise SystemExit(f"{sdist}: no tests/ folder in this sdist")


def pytest(folder: Path, path: list[Path], *options: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, path), env.get("PYTHONPATH", "")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    command = [sys.executable, "-m", "pytest", "seed_tests", "-p", "no:cacheprovider"]
    # The seed's settings leave this unset, and pytest-asyncio warns about it at every run.
    command += ["-o", "asyncio_default_fixture_loop_scope=function", *options]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, check=False)


def seed_test_ids(folder: Path) -> list[str]:
    """Every test of the suite, as collected with the seed's own package."""
    listing = pytest(folder, [folder / "seed_package"], "--collect-only", "-q")
    return [
        line.removeprefix("seed_tests/")
        for line in listing.stdout.splitlines()
        if line.startswith("seed_tests/") and "::" in line
    ]


def run_suite(sdist: Path, *, baseline: bool = False) -> dict[str, str]:
    """``{test id: outcome}`` for every test of the seed's suite run against taskflow (or,
    with ``baseline``, against the seed's own package): ``passed``, ``failed``, ``skipped``,
    or ``noimport`` (its module failed to import, so none of its tests ran)."""
    with tempfile.TemporaryDirectory(prefix="taskflow-seed-") as tmp:
        folder = Path(tmp)
        unpack(sdist, folder)
        report = folder / "report.xml"
        against = ["-p", "alias"] if not baseline else []
        ran = pytest(
            folder,
            [folder / "seed_package"] if baseline else [HERE, REPO],
            *against,
            "-o",
            f"timeout={TEST_TIMEOUT}",
            # A module that fails to import (a name taskflow does not have) fails as a whole;
            # the other modules still run.
            "--continue-on-collection-errors",
            f"--junitxml={report}",
        )
        if not report.exists():
            raise SystemExit(f"the seed's suite did not run:\n{ran.stdout[-2000:]}{ran.stderr}")
        results = outcomes(ET.parse(report).getroot())
        for test_id in seed_test_ids(folder):
            module = test_id.split("::")[0]
            if results.get(module) == "failed":
                results[test_id] = "noimport"
        return {test_id: outcome for test_id, outcome in results.items() if "::" in test_id}


def outcomes(report: ET.Element) -> dict[str, str]:
    results = {}
    for case in report.iter("testcase"):
        classname = case.get("classname", "")
        if classname:  # seed_tests.test_x, or seed_tests.test_x.TestClass
            module, *rest = classname.split(".")[1:]
            test_id = f"{module}.py::" + "::".join([*rest, case.get("name", "")])
        else:  # a module that could not be collected, named seed_tests.test_x
            test_id = case.get("name", "").split(".")[-1] + ".py"
        if case.find("skipped") is not None:
            results[test_id] = "skipped"
        elif case.find("failure") is not None or case.find("error") is not None:
            results[test_id] = "failed"
        else:
            results[test_id] = "passed"
    return results


def read_expectations(path: Path) -> dict[str, tuple[str, str]]:
    """``{test id: (outcome, reason)}``; lines are ``test id  outcome  reason``."""
    expected = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                test_id, outcome, *reason = line.split(maxsplit=2)
                expected[test_id] = (outcome, reason[0] if reason else "")
    return expected


def write_expectations(path: Path, version: str, results: dict[str, str]) -> None:
    """Rewrite ``path`` with these outcomes. A reason already written stays while its test's
    outcome does not change; a new failure is marked :data:`UNEXPLAINED` until explained."""
    old = read_expectations(path)
    lines = [
        f"# fastapi-taskflow {version}'s suite run against taskflow (python -m tests.seed.run).",
        "# test id, outcome, why: a tag (explained in docs/migrating.md) and a detail;",
        "# on a pass, a note when the pass says less than it seems.",
    ]
    width = max(len(test_id) for test_id in results)
    for test_id, outcome in sorted(results.items()):
        was, reason = old.get(test_id, ("", ""))
        if outcome != was:
            reason = "" if outcome == "passed" else UNEXPLAINED
        lines.append(f"{test_id:<{width}}  {outcome:<8}  {reason}".rstrip())
    path.write_text("\n".join(lines) + "\n")


def differences(results: dict[str, str], expected: dict[str, tuple[str, str]]) -> list[str]:
    """What ran differently from the expectations, one line each."""
    lines = []
    for test_id in sorted(results.keys() | expected.keys()):
        got = results.get(test_id, "missing")
        want = expected.get(test_id, ("missing", ""))[0]
        if got != want:
            lines.append(f"{test_id}: expected {want}, got {got}")
    return lines


def summary(results: dict[str, str], expected: dict[str, tuple[str, str]]) -> str:
    lines = [_counts(Counter(results.values()))]
    # Grouped by tag, the reason's first word.
    reasons = Counter(
        (expected.get(test_id, ("", ""))[1] or UNEXPLAINED).split()[0]
        for test_id, outcome in results.items()
        if outcome in ("failed", "noimport")
    )
    for reason, count in reasons.most_common():
        lines.append(f"  {count:4}  {reason}")
    return "\n".join(lines)


def _counts(counts: Counter[str]) -> str:
    return ", ".join(f"{counts[outcome]} {outcome}" for outcome in OUTCOMES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sdist", type=Path, help="fastapi_taskflow-<version>.tar.gz")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--update", action="store_true", help="rewrite the expectations file")
    choice.add_argument("--baseline", action="store_true", help="run it against the seed itself")
    options = parser.parse_args(argv)
    version = seed_version(options.sdist)
    if options.baseline:
        counts = Counter(run_suite(options.sdist, baseline=True).values())
        print(f"fastapi-taskflow {version}'s suite against itself: {_counts(counts)}")
        return 0
    path = expectations_file(version)
    results = run_suite(options.sdist)
    if options.update:
        write_expectations(path, version, results)
    expected = read_expectations(path)
    print(f"fastapi-taskflow {version}'s suite against taskflow: {summary(results, expected)}")
    changed = differences(results, expected)
    for line in changed:
        print(line)
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
