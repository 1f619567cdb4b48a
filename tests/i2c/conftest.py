"""Fixtures for the I2C tests: an emulated bus on simulated time (the only stand-in below smbus2)."""

from __future__ import annotations

import pytest

from hil.i2c.bus import EmulatedBus
from hil.i2c.clock import SimClock


@pytest.fixture
def clock() -> SimClock:
    return SimClock()


@pytest.fixture
def bus(clock: SimClock) -> EmulatedBus:
    return EmulatedBus(clock)
