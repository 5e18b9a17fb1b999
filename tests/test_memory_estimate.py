"""The static memory estimate (meta-device count) and the measurement it is calibrated against."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nnunetv2_unetrpp import memory_estimate
from nnunetv2_unetrpp.benchmarking.memory import PeakTensorMemory, _networks, measure_peak


def test_peak_tracker_follows_storages_until_their_last_reference_goes():
    mode = PeakTensorMemory(initial=100)
    with mode:
        a = torch.ones(1000)  # 4000 bytes
        view = a[:10]
        del a  # the view keeps the storage alive
        b = torch.ones(2000)  # 8000 bytes
        del view, b
        c = torch.ones(500)  # 2000 bytes, after both are gone
    assert mode.peak == 100 + 4000 + 8000
    assert mode.current == 100 + 2000
    del c


def test_count_holds_saved_activations_once_and_the_outputs():
    with torch.device("meta"):
        network = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))
    count = memory_estimate.count_training_memory(network, (10,))
    assert count.parameter_bytes == (10 * 20 + 20 + 20 * 5 + 5) * 4
    # the input (saved by the first Linear), the ReLU output (saved by ReLU and the second Linear: once), the output
    assert count.activation_bytes_per_sample == (10 + 20 + 5) * 4
    assert count.training_bytes(3, 2.0) == 3 * count.parameter_bytes + 2.0 * 3 * (10 + 20 + 5) * 4


@pytest.mark.parametrize("kind, patch, batch", [("unetrpp", (16, 32, 32), 2), ("cnn", (16, 32, 32), 2)])
def test_calibrated_estimate_is_within_a_quarter_of_a_measured_training_step(kind, patch, batch):
    network, meta = _networks(kind, patch)
    count = memory_estimate.count_training_memory(meta, (1, *patch))
    factor = memory_estimate.UNETRPP_ACTIVATION_FACTOR if kind == "unetrpp" else \
        memory_estimate.PLAIN_CNN_ACTIVATION_FACTOR
    estimate = count.training_bytes(batch, factor)
    measured = measure_peak(network, (batch, 1, *patch))
    assert 0.75 < estimate / measured < 1.25, (estimate, measured)
