"""Shared test fixtures: the official reference outputs live in ../shared/reference (never copied)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

REFERENCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


@pytest.fixture(scope="session")
def fixture_weights():
    """The `fixture_weights` module that rebuilds the reference weights and inputs."""
    path = REFERENCE_DIR / "fixture_weights.py"
    if not path.is_file():
        pytest.fail(f"reference fixtures not found at {REFERENCE_DIR}; the tests expect ../shared/reference beside the repo")
    spec = importlib.util.spec_from_file_location("fixture_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_reference(variant: str) -> dict:
    with open(REFERENCE_DIR / f"official_{variant}.json") as f:
        return json.load(f)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
