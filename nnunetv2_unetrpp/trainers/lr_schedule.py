"""Linear warm-up, then poly decay, as one scheduler for nnU-Net's training loop."""
from __future__ import annotations

from nnunetv2.training.lr_scheduler.warmup import Lin_incr_LRScheduler, PolyLRScheduler_offset
from torch.optim import Optimizer
from torch.optim.lr_scheduler import _LRScheduler


class WarmupPolyLR(_LRScheduler):
    """nnU-Net's linear warm-up (`Lin_incr_LRScheduler`) over the first `warmup_steps` epochs, then its
    poly decay (`PolyLRScheduler_offset`) to 0 at `max_steps`.

    nnU-Net's own warm-up trainers switch optimisers between the phases; the trainer loop steps one
    `lr_scheduler` with the epoch, so this object delegates each step to the phase it falls in.
    """

    def __init__(self, optimizer: Optimizer, max_lr: float, warmup_steps: int, max_steps: int) -> None:
        if warmup_steps < 1:
            raise ValueError(f"warmup_steps must be at least 1, got {warmup_steps}")
        self.warmup_steps = warmup_steps
        self.ctr = 0
        # the decay phase divides by its length: at least one step even when training ends in the warm-up
        self.phases = (Lin_incr_LRScheduler(optimizer, max_lr, warmup_steps),
                       PolyLRScheduler_offset(optimizer, max_lr, max(max_steps, warmup_steps + 1), warmup_steps))
        super().__init__(optimizer, -1)

    def step(self, current_step: int | None = None) -> None:
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        self.phases[current_step >= self.warmup_steps].step(current_step)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
