"""Shared fixtures: an app on a temporary data folder with a controllable clock."""

from __future__ import annotations

import time

import pytest


class FakeClock:
    """Starts at real time (so authlib's own checks agree) and moves only when told."""

    def __init__(self) -> None:
        self.now = float(int(time.time()) // 30 * 30 + 5)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
