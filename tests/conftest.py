"""Settings every test shares, and the test tiers.

`./run.sh test` runs everything (as CI does); `./run.sh test -m "not slow"` leaves out the tests
that run nnU-Net's commands in subprocesses, DDP and the demo.
"""
from __future__ import annotations

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: runs nnU-Net commands in subprocesses, DDP or the demo (minutes on 2 cores)")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
