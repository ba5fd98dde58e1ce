"""A straightforward ComPEFT reference, written independently of compeft_core, for the tests."""

from __future__ import annotations

import torch

PAPER = {"factorisation": "as-trained", "scale": "entry"}  # the ComPEFT paper's choices


def _lora_pairs(tensors: dict[str, torch.Tensor]) -> list[tuple[str, str]]:
    """(A name, B name) of every `<m>.lora_A.weight` / `<m>.lora_B.weight` whose shapes multiply."""
    pairs = []
    for name in sorted(tensors):
        if name.endswith(".lora_A.weight"):
            partner = name.removesuffix(".lora_A.weight") + ".lora_B.weight"
            a, b = tensors[name], tensors.get(partner)
            if b is not None and a.dim() == b.dim() == 2 and a.shape[0] == b.shape[1]:
                pairs.append((name, partner))
    return pairs


def balanced(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each LoRA pair re-factored from the full SVD of B·A: B' = U√S, A' = √S Vᵀ (rank r kept),
    each component's sign such that the largest entry of its row of A' is positive; float32."""
    out = {name: t.to(torch.float32) for name, t in tensors.items()}
    for a_name, b_name in _lora_pairs(tensors):
        a, b = tensors[a_name].double(), tensors[b_name].double()
        u, s, vh = torch.linalg.svd(b @ a, full_matrices=False)
        r = min(a.shape[0], s.numel())
        a_rows = s[:r].sqrt()[:, None] * vh[:r]
        signs = torch.sign(a_rows.gather(1, a_rows.abs().argmax(dim=1, keepdim=True)))
        new_a, new_b = torch.zeros_like(a), torch.zeros_like(b)
        new_a[:r] = a_rows * signs
        new_b[:, :r] = u[:, :r] * s[:r].sqrt() * signs.T
        out[a_name], out[b_name] = new_a.float(), new_b.float()
    return out


def reference_decompress(
    tensors: dict[str, torch.Tensor],
    density: float,
    scope: str,
    alpha: float | None,
    dtype: torch.dtype,
    factorisation: str = "as-trained",
    scale: str = "entry",
) -> dict[str, torch.Tensor]:
    """alpha * sigma * sign(x) on the k = round(density * n) largest |x| (earliest wins ties).

    "balanced" first re-factors LoRA pairs (`balanced`); "unbiased" then gives each pair the
    alphas that make ⟨ΔŴ, ΔW⟩ = ‖ΔW‖² with both factors at the same alpha * sigma.
    """
    source = balanced(tensors) if factorisation == "balanced" else tensors
    names = sorted(tensors)
    flats = [source[n].detach().reshape(-1).to(torch.float32) for n in names]
    groups = [[i] for i in range(len(names))] if scope == "tensor" else [list(range(len(names)))]
    keeps, sigmas, alphas = {}, {}, {}
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
        offset = 0
        for i in group:
            size = flats[i].numel()
            keeps[names[i]] = keep[offset : offset + size]
            sigmas[names[i]], alphas[names[i]] = sigma, a
            offset += size
    if alpha is None and scale == "unbiased":
        alphas.update(_unbiased_alphas(source, keeps, sigmas, scope))
    return {
        name: torch.where(
            keeps[name],
            torch.sign(flat).to(dtype) * torch.tensor(alphas[name] * sigmas[name], dtype=dtype),
            torch.zeros((), dtype=dtype),
        ).reshape(tensors[name].shape)
        for name, flat in zip(names, flats, strict=True)
    }


def _unbiased_alphas(
    source: dict[str, torch.Tensor],
    keeps: dict[str, torch.Tensor],
    sigmas: dict[str, float],
    scope: str,
) -> dict[str, float]:
    """Per pair (or, under global scope, over all pairs) alpha * sigma = sqrt(‖W‖² / ⟨W, P⟩)."""
    moments = {}
    for a_name, b_name in _lora_pairs(source):
        a, b = source[a_name].double(), source[b_name].double()
        ternary_a = torch.where(keeps[a_name].reshape(a.shape), torch.sign(a), 0)
        ternary_b = torch.where(keeps[b_name].reshape(b.shape), torch.sign(b), 0)
        product = b @ a
        moments[a_name, b_name] = (
            float((product**2).sum()),
            float((product * (ternary_b @ ternary_a)).sum()),
        )
    if scope == "global" and moments:
        norm, inner = (sum(m[i] for m in moments.values()) for i in (0, 1))
        moments = {pair: (norm, inner) for pair in moments}
    alphas = {}
    for (a_name, b_name), (norm, inner) in moments.items():
        root = (norm / inner) ** 0.5 if inner > 0 else 0.0
        for name in (a_name, b_name):
            alphas[name] = float(
                torch.tensor(root / sigmas[name] if sigmas[name] > 0 else 0.0).float()
            )
    if scope == "global":
        return dict.fromkeys(source, next(iter(alphas.values()))) if alphas else {}
    return alphas


def reference_fidelity(
    uploaded: dict[str, torch.Tensor], decoded: dict[str, torch.Tensor]
) -> dict[str, tuple[float, float]]:
    """Module path (LoRA pairs: of the full products B·A) or tensor name -> (relative error,
    cosine) of the decoded update, in float64; a zero update decoded as zero is exact."""
    figures = {}
    paired = set()
    updates = []
    for a_name, b_name in _lora_pairs(uploaded):
        updates.append(
            (
                a_name.removesuffix(".lora_A.weight"),
                uploaded[b_name].double() @ uploaded[a_name].double(),
                decoded[b_name].double() @ decoded[a_name].double(),
            )
        )
        paired.update((a_name, b_name))
    updates += [
        (name, uploaded[name].double(), decoded[name].double())
        for name in sorted(uploaded)
        if name not in paired
    ]
    for name, x, x_hat in updates:
        if not x.any() or not x_hat.any():
            exact = not x.any() and not x_hat.any()
            figures[name] = (0.0 if exact else 1.0, 1.0 if exact else 0.0)
        else:
            figures[name] = (
                float((x - x_hat).norm() / x.norm()),
                float((x * x_hat).sum() / (x.norm() * x_hat.norm())),
            )
    return figures
