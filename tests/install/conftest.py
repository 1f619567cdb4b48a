"""The installer's tests: `slow` ones (real bundles, real dependencies) run only with EDGEAGENT_SLOW_TESTS=1."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: builds real bundles (network, ~1 min); EDGEAGENT_SLOW_TESTS=1 runs it")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("EDGEAGENT_SLOW_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="slow (builds a real bundle): set EDGEAGENT_SLOW_TESTS=1 to run it")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)
