from __future__ import annotations

import os
import tempfile

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # The facts cache of the tool under test goes to a scratch directory, not ~/.cache.
    os.environ["VMSTATE_GUARD_CACHE"] = tempfile.mkdtemp(prefix="vmstate-guard-test-cache-")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-snapshots",
        action="store_true",
        help="rewrite the golden report files in tests/golden/ instead of comparing with them",
    )


@pytest.fixture
def update_snapshots(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-snapshots"))
