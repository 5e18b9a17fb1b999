"""Rules that move UNETR++ weights from one patch geometry to another.

Every geometry-dependent tensor is a function over a regular grid that covers the same field of
view in both geometries: the token grid of a stage (positional embeddings, the E/F projections)
or the kernel of a kernel = stride convolution (one patch of the input or of the output). Grid
points sit at cell centres, `u = (i + 0.5) / n` along each axis, as in PyTorch's
`align_corners=False`. One per-axis interpolation matrix (`interpolation_matrix`) serves all rules,
in one of two roles:

* values (positional embeddings, transposed-convolution kernels, which paint an output patch):
  the new tensor samples the old one, `new = W old`. W is linear interpolation with linear
  extrapolation in the outer half cells, so affine fields (constants, ramps) are reproduced
  exactly; inside, it equals `F.interpolate(..., mode="(bi|tri)linear")`, as timm's
  `resample_abs_pos_embed` does in 2D.
* linear functionals (E/F rows, kernels of the stem and the downsamplings, which weight the
  tokens or voxels of a patch): the new weights are the adjoint, `new = R^T old`, where R
  interpolates fields from the new grid to the old. Then `<new, field_new> = <old, R field_new>`:
  the response to every field that R reproduces, constants and ramps included, is kept exactly,
  in both directions. This replaces "resample, then rescale by N / N'": the adjoint carries the
  rescaling, and keeps linear fields exactly too. FlexiViT's pseudo-inverse resize
  (`resample_patch_embed` in timm) keeps every input exactly when the kernel grows, but when it
  shrinks (stride 2 -> 1, which thick-slice plans need) it only keeps a least-squares fit; the
  adjoint is exact for constant and linear inputs both ways, and it is one rule with E/F.

An axis that shrinks to one cell cannot see a gradient: there only constants are kept.
Input channels follow timm's `adapt_input_conv`, generalised from 3 to any source channel count.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch


def interpolation_matrix(n_from: int, n_to: int) -> torch.Tensor:
    """(n_to, n_from) float64 matrix: linear interpolation between cell-centred grids of the same
    extent, extrapolating linearly in the outer half cells; the identity when the sizes agree."""
    if n_from == n_to:
        return torch.eye(n_to, dtype=torch.float64)
    matrix = torch.zeros(n_to, n_from, dtype=torch.float64)
    if n_from == 1:
        matrix[:, 0] = 1.0
        return matrix
    x = (torch.arange(n_to, dtype=torch.float64) + 0.5) * (n_from / n_to) - 0.5
    left = x.floor().clamp(0, n_from - 2).long()
    frac = x - left
    rows = torch.arange(n_to)
    matrix[rows, left] = 1.0 - frac
    matrix[rows, left + 1] = frac
    return matrix


def _apply_per_axis(tensor: torch.Tensor, axes: Sequence[int], old: Sequence[int], new: Sequence[int],
                    adjoint: bool) -> torch.Tensor:
    """Apply the per-axis interpolation (or its adjoint) to the grid axes `axes` of `tensor`, in float64."""
    out = tensor.to(torch.float64)
    for axis, n_old, n_new in zip(axes, old, new):
        if n_old == n_new:
            continue
        # values: new = W(old -> new) @ old; functionals: new = R(new -> old)^T @ old
        matrix = interpolation_matrix(n_new, n_old).T if adjoint else interpolation_matrix(n_old, n_new)
        out = torch.movedim(torch.tensordot(out, matrix, dims=([axis], [1])), -1, axis)
    return out.to(tensor.dtype)


def _check_grid(shape_part: int, grid: Sequence[int], what: str) -> None:
    if shape_part != math.prod(grid):
        raise ValueError(f"{what} has {shape_part} tokens, but the grid {tuple(grid)} has {math.prod(grid)}")


def resample_positional_embedding(pos_embed: torch.Tensor, old_grid: Sequence[int], new_grid: Sequence[int]) -> torch.Tensor:
    """(1, N, C) embedding over `old_grid` (C-order tokens) -> (1, N', C) over `new_grid`, as values."""
    _check_grid(pos_embed.shape[1], old_grid, "the positional embedding")
    grid = pos_embed.reshape(pos_embed.shape[0], *old_grid, pos_embed.shape[2])
    axes = range(1, 1 + len(old_grid))
    return _apply_per_axis(grid, axes, old_grid, new_grid, adjoint=False).reshape(pos_embed.shape[0], -1, pos_embed.shape[2])


def resample_token_projection(weight: torch.Tensor, old_grid: Sequence[int], new_grid: Sequence[int]) -> torch.Tensor:
    """(p, N) E/F weight, each row a functional over `old_grid` -> (p, N') over `new_grid`, as adjoints:
    the projection of every token field that linear interpolation reproduces keeps its value."""
    _check_grid(weight.shape[1], old_grid, "the token projection")
    grid = weight.reshape(weight.shape[0], *old_grid)
    return _apply_per_axis(grid, range(1, 1 + len(old_grid)), old_grid, new_grid, adjoint=True).reshape(weight.shape[0], -1)


def resize_patch_kernel(weight: torch.Tensor, new_kernel: Sequence[int], transposed: bool = False) -> torch.Tensor:
    """Kernel = stride convolution weight, (out, in, *k) or, `transposed`, (in, out, *k) -> kernel `new_kernel`.

    A convolution weights the voxels of an input patch (adjoint rule: its response to constant and
    linear inputs is kept); a transposed convolution paints an output patch (value rule: a constant
    input paints the same field, resampled).
    """
    old_kernel = weight.shape[2:]
    if len(new_kernel) != len(old_kernel):
        raise ValueError(f"cannot resize a {len(old_kernel)}D kernel to {tuple(new_kernel)}")
    return _apply_per_axis(weight, range(2, weight.ndim), old_kernel, new_kernel, adjoint=not transposed)


def adapt_input_channels(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """(out, in, *k) weight -> (out, channels, *k), as timm's `adapt_input_conv`: one channel gets the
    sum over the old ones; more channels get the old ones repeated, scaled by old / new, so an input
    whose channels are equal gives the same response (exactly when `channels` is a multiple of the old count)."""
    old = weight.shape[1]
    if channels == old:
        return weight
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-channels // old)
    return weight.repeat(1, repeats, *([1] * (weight.ndim - 2)))[:, :channels] * (old / channels)
