"""A straightforward ComPEFT reference, written independently of compeft_core, for the tests."""

from __future__ import annotations

import torch


def reference_decompress(
    tensors: dict[str, torch.Tensor], density: float, scope: str, alpha: float | None,
    dtype: torch.dtype,
) -> dict[str, torch.Tensor]:
    """alpha * sigma * sign(x) on the k = round(density * n) largest |x| (earliest wins ties)."""
    names = sorted(tensors)
    flats = [tensors[n].detach().reshape(-1).to(torch.float32) for n in names]
    groups = [[i] for i in range(len(names))] if scope == "tensor" else [list(range(len(names)))]
    decoded: dict[str, torch.Tensor] = {}
    for group in groups:
        x = torch.cat([flats[i] for i in group])
        k = round(density * x.numel())
        order = torch.sort(-x.abs(), stable=True).indices[:k]
        keep = torch.zeros(x.numel(), dtype=torch.bool)
        keep[order] = True
        sigma = float(x.double().std(correction=0).float())
        if alpha is None:
            mean_abs = x.double().abs()[keep].mean().item() if k else 0.0
            a = float(torch.tensor(mean_abs / sigma if k and sigma > 0 else 0.0).float())
        else:
            a = alpha
        scale = torch.tensor(a * sigma, dtype=dtype)
        values = torch.where(keep, torch.sign(x).to(dtype) * scale, torch.zeros((), dtype=dtype))
        offset = 0
        for i in group:
            size = flats[i].numel()
            decoded[names[i]] = values[offset : offset + size].reshape(tensors[names[i]].shape)
            offset += size
    return decoded
