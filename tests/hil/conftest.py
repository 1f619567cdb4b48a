"""Fixtures for the HIL plant tests: running plants on 127.0.0.1 with ephemeral ports."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hil.server import Plant, serve_plant

#: Plant seconds per wall second for tests that wait on time constants and revert timers.
FAST = 40.0


@pytest.fixture
async def sunny_plant() -> AsyncIterator[Plant]:
    """The default scenario in real time."""
    async with serve_plant("sunny-day", speed=1.0, host="127.0.0.1", port_base=0) as plant:
        yield plant


@pytest.fixture
async def fast_plant() -> AsyncIterator[Plant]:
    """The default scenario at FAST x real time."""
    async with serve_plant("sunny-day", speed=FAST, host="127.0.0.1", port_base=0) as plant:
        yield plant
