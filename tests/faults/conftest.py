"""The fault-injection suite: every test here is marked `faults` (run in CI; select with -m faults)."""

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/faults/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.faults)
