"""Small functional helpers shared by the UNETR++ modules."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nnunetv2_unetrpp.network_architecture.channels_last import is_channels_last
from nnunetv2_unetrpp.network_architecture.execution import use_cpu_fast_paths

_CONV = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}


def channel_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A linear map over the channels of a channel-major (B, C, *spatial) tensor, with `weight`
    (C_out, C_in) or a 1x1(x1) convolution's (C_out, C_in, 1, ...). Returns channel-first.

    Off the CPU path (see `execution.py`) it is that 1x1 convolution: one cuDNN kernel each way,
    whose weight cast autocast caches. On CPU, `_cpu_channel_linear`.
    """
    if use_cpu_fast_paths(x):
        return _cpu_channel_linear(x, weight, bias)
    return _CONV[x.ndim](x, weight.view(weight.shape[0], -1, *(1,) * (x.ndim - 2)), bias)


def _cpu_channel_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`channel_linear` as matrix products: per-sample `torch.mm` for a channels-last input, one
    `bmm` otherwise. A channels-last input is a batch of column-major (C, N) matrices, which
    `torch.mm` multiplies without a copy and whose gradient it returns column-major again, i.e.
    channels-last like the input. For the full-resolution head as the network feeds it, on 2 quiet
    cores: 2.8x to 3.3x as fast as the stock 1x1 convolution at batch 1 and 1.2x at batch 2
    (docs/BENCHMARKS.md, section 6: python -m nnunetv2_unetrpp.benchmarking.cpu_fast_paths)."""
    B, _, *spatial = x.shape
    w = weight.reshape(weight.shape[0], -1).to(x.dtype)
    b = None if bias is None else bias.to(x.dtype)[:, None]
    flat = x.flatten(2)
    if is_channels_last(x):
        # squeeze, not unbind, a single sample: unbind's backward would copy the gradient
        mats = [flat.squeeze(0)] if B == 1 else flat.unbind(0)
        out = [torch.mm(w, m) if b is None else torch.addmm(b, w, m) for m in mats]
        out = out[0].unsqueeze(0) if B == 1 else torch.stack(out)
    else:
        w = w.expand(B, -1, -1)
        out = torch.bmm(w, flat) if b is None else torch.baddbmm(b, w, flat)
    return out.view(B, -1, *spatial)
