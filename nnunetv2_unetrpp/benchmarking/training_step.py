"""The training step every benchmark of this package times: nnU-Net's, with a synthetic loss.

As `nnUNetTrainer` trains (`configure_optimizers`, `train_step`): SGD with lr `initial_lr` = 1e-2,
momentum 0.99, Nesterov and weight decay `weight_decay` = 3e-5; gradients zeroed with
`set_to_none`; fp16 autocast and a grad scaler on CUDA only; gradients (unscaled) clipped to norm
12 before the optimizer step; torch.compile of the network where nnU-Net compiles. The loss is the
mean square of every deep-supervision output instead of Dice + CE: it needs no targets and costs
next to nothing, so the step times the network and the optimizer. It is written out rather than
called from nnunetv2 because the GPU check runs where nnunetv2 is not installed;
`tests/test_benchmark_cli.py` checks it against nnU-Net's own `train_step` (same weights after
the same steps).
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import torch
from torch import nn

#: nnUNetTrainer's optimizer and clipping (nnUNetTrainer.__init__, configure_optimizers, train_step).
INITIAL_LR, MOMENTUM, WEIGHT_DECAY, GRAD_NORM_CLIP = 1e-2, 0.99, 3e-5, 12.0

Loss = Callable[[torch.Tensor | list[torch.Tensor]], torch.Tensor]


def synthetic_loss(output: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """Mean square of every (deep-supervision) output: a loss that touches all outputs, in fp32."""
    outputs = output if isinstance(output, (list, tuple)) else [output]
    return sum(o.float().square().mean() for o in outputs)


class TrainingStep:
    """`step(x)`: one nnU-Net training step of `network` on the batch `x`.

    amp: fp16 autocast with a grad scaler, which nnU-Net uses on CUDA and nowhere else (ValueError
    on another device); compile_backend: torch.compile the network with this backend (None: eager).
    """

    def __init__(self, network: nn.Module, device: torch.device | str, amp: bool = False,
                 compile_backend: str | None = None, loss: Loss = synthetic_loss) -> None:
        device = torch.device(device)
        if amp and device.type != "cuda":
            raise ValueError(f"nnU-Net trains with fp16 autocast on CUDA only, not on {device.type}")
        self.network = network.to(device).train()
        self.run = torch.compile(self.network, backend=compile_backend) if compile_backend else self.network
        self.optimizer = torch.optim.SGD(self.network.parameters(), INITIAL_LR, momentum=MOMENTUM, nesterov=True,
                                         weight_decay=WEIGHT_DECAY)
        self.autocast = torch.autocast(device.type, dtype=torch.float16) if amp else nullcontext()
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp)
        self.loss = loss

    def __call__(self, x: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast:
            loss = self.loss(self.run(x))
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), GRAD_NORM_CLIP)
        self.scaler.step(self.optimizer)
        self.scaler.update()
