"""Grow a trained VarNet's U-Nets to more channels without changing what it computes.

A wider model started from a narrower trained one keeps everything the narrow one learnt: every
old channel sits at its old place and keeps its weights; every new channel starts from the wide
model's own random initialisation, and its weights *into old channels* start at zero, so the old
channels (and hence the output) are exactly those of the narrow model. Training then moves the
new channels in (their outgoing weights get gradients at once). Channel-wise layers (instance
norm, LeakyReLU) keep this exact; fastMRI's U-Net has no cross-channel normalisation.

The U-Net's decoder convolutions read `cat(upsampled, skip)`, so their input channels are two
blocks, each widened on its own.
"""

from __future__ import annotations

import re

import torch

#: First convolution of a decoder block: its input is the concatenation of two channel blocks.
_CONCAT = re.compile(r"up_conv\.\d+\.(0\.)?layers\.0\.weight$")
#: Transposed convolutions store their weight as (in, out, kh, kw).
_TRANSPOSE = re.compile(r"up_transpose_conv\.\d+\.layers\.0\.weight$")


def _old_index(old: int, new: int, blocks: int) -> torch.Tensor:
    """Positions of the `old` channels among `new` when both are `blocks` equal concatenated blocks."""
    if old % blocks or new % blocks:
        raise ValueError(f"{old} -> {new} channels do not split into {blocks} blocks")
    o, n = old // blocks, new // blocks
    return torch.cat([torch.arange(o) + b * n for b in range(blocks)])


def widen_state_dict(narrow: dict[str, torch.Tensor], wide: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The wide model's state dict with the narrow one embedded (see the module docstring).

    Args:
        narrow: trained state dict (e.g. 8-channel cascades).
        wide: freshly initialised state dict of the same architecture with more channels (same
            cascades, pools and key names); its values fill the new channels.

    Returns:
        A new state dict of `wide`'s shapes whose model computes exactly what `narrow`'s does.

    Raises:
        ValueError: the key sets differ, or a tensor cannot hold the narrow one (a dimension
            shrinks, or the number of dimensions differs).
    """
    if narrow.keys() != wide.keys():
        raise ValueError(f"different models: keys only in one of them: {sorted(narrow.keys() ^ wide.keys())[:4]}")
    out: dict[str, torch.Tensor] = {}
    for key, w in wide.items():
        n = narrow[key]
        if n.dim() != w.dim() or any(a > b for a, b in zip(n.shape, w.shape)):
            raise ValueError(f"{key}: cannot widen {tuple(n.shape)} to {tuple(w.shape)}")
        t = w.detach().clone()
        if n.shape == w.shape:
            out[key] = n.detach().clone()
            continue
        if n.dim() == 1:  # bias of a widened output
            t[: n.shape[0]] = n
            out[key] = t
            continue
        out_dim, in_dim = (1, 0) if _TRANSPOSE.search(key) else (0, 1)
        rows = torch.arange(n.shape[out_dim])
        cols = _old_index(n.shape[in_dim], w.shape[in_dim], 2 if _CONCAT.search(key) else 1)
        view = t if out_dim == 0 else t.transpose(0, 1)
        narrow_view = n if out_dim == 0 else n.transpose(0, 1)
        view[rows] = 0  # old outputs: nothing from new inputs ...
        view[rows[:, None], cols[None, :]] = narrow_view  # ... and their old weights from old inputs
        out[key] = t
    return out
