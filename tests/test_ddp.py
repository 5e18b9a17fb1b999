"""nnU-Net's DDP set-up of the network (-num_gpus): SyncBatchNorm.convert_sync_batchnorm, then
DistributedDataParallel without find_unused_parameters. PyTorch synchronises batch norms on GPUs only, so
on two CPU processes with gloo the training step runs the network unconverted (the conversion itself is
PyTorch's and is not tested here)."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from torch.nn.parallel import DistributedDataParallel as DDP

from nnunetv2_unetrpp.network_architecture import UNETRPP
from nnunetv2_unetrpp.trainers import DEEP_SUPERVISION_WEIGHTS

pytestmark = pytest.mark.slow


def _step(rank: int, world_size: int, port: int, deep_supervision: bool, network_kwargs: dict, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)
        model = DDP(UNETRPP(1, 3, (16, 32, 32), stem_stride=(2, 4, 4), deep_supervision=deep_supervision,
                           **network_kwargs))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        torch.manual_seed(rank)
        x = torch.randn(2, 1, 16, 32, 32)
        for _ in range(2):  # DDP reports unused parameters on the iteration after they were skipped
            out = model(x)
            if deep_supervision:
                loss = DeepSupervisionWrapper(lambda o, t: (o - t).square().mean(), DEEP_SUPERVISION_WEIGHTS)(
                    out, [torch.zeros_like(o) for o in out])
            else:
                loss = out.square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        results[rank] = torch.cat([p.detach().flatten() for p in model.parameters()]).sum().item()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("deep_supervision", [True, False])
def test_ddp_training_step_on_two_cpu_processes(deep_supervision, tiny_unetrpp_kwargs):
    results = mp.Manager().dict()
    mp.spawn(_step, args=(2, _free_port(), deep_supervision, tiny_unetrpp_kwargs, results), nprocs=2, join=True)
    assert len(results) == 2 and results[0] == pytest.approx(results[1], rel=1e-6)  # replicas stay in sync
