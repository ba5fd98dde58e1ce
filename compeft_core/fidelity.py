"""Fidelity: how far a compressed expert's update is from the original, module by module.

For a LoRA pair the update is the product B·A (what the model adds), so the error is measured on
the product, whatever gauge the blob stores its factors in; for any other tensor ((IA)^3 vectors
as their change from one, residuals) on the tensor itself. Two figures per module:
- the relative error ‖x − x̂‖ / ‖x‖ (0 is exact, 1 is as far as dropping the module);
- the cosine ⟨x, x̂⟩ / (‖x‖ ‖x̂‖), blind to the scale. The hub's default scale is unbiased along x
  (⟨x, x̂⟩ = ‖x‖²), so its relative error is tan(angle) and can exceed 1 while the expert keeps
  its skill: the cosine is the figure that follows accuracy across scale rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from compeft_core.errors import CompressionInputError
from compeft_core.lora_gauge import lora_pairs, product_inner

if TYPE_CHECKING:
    from compeft_core.expert import CompressedExpert


@dataclass(frozen=True)
class Fidelity:
    """How well one module's update survived compression."""

    relative_error: float
    cosine: float

    @classmethod
    def of(cls, squared_norm: float, inner: float, squared_norm_decoded: float) -> Fidelity:
        """From ‖x‖², ⟨x, x̂⟩ and ‖x̂‖²; a zero update decoded as zero is exact."""
        if squared_norm == 0 or squared_norm_decoded == 0:
            exact = squared_norm == squared_norm_decoded
            return cls(0.0 if exact else 1.0, 1.0 if exact else 0.0)
        error = np.sqrt(max(squared_norm - 2 * inner + squared_norm_decoded, 0.0) / squared_norm)
        return cls(float(error), float(inner / np.sqrt(squared_norm * squared_norm_decoded)))


def module_fidelity(
    original: Mapping[str, torch.Tensor], expert: CompressedExpert
) -> dict[str, Fidelity]:
    """Module path (for LoRA pairs) or tensor name -> fidelity of the decoded update.

    Checks any blob against the task vector it was made from (same names and shapes), by
    decoding it; `compress(..., measure_fidelity=True)` gives the same figures without decoding.
    Products are compared through r x r matrices (`product_inner`, float32 BLAS: about 1e-6
    relative, ample for figures shown with three digits), never formed; other tensors in
    float64.
    """
    if set(original) != set(expert.names):
        raise CompressionInputError("the original tensors do not match the compressed expert's")
    decoded = expert.decompress(dtype=torch.float32)

    def values(tensors: Mapping[str, torch.Tensor], name: str) -> np.ndarray:
        return tensors[name].detach().cpu().to(torch.float32).numpy()

    figures: dict[str, Fidelity] = {}
    paired: set[str] = set()
    for pair in lora_pairs(expert.names, expert.shapes):
        a_name, b_name = expert.names[pair.a], expert.names[pair.b]
        a, b = values(original, a_name), values(original, b_name)
        a_hat, b_hat = values(decoded, a_name), values(decoded, b_name)
        figures[pair.module] = Fidelity.of(
            product_inner(a, b, a, b), product_inner(a, b, a_hat, b_hat),
            product_inner(a_hat, b_hat, a_hat, b_hat),
        )
        paired.update((a_name, b_name))
    for name in expert.names:
        if name not in paired:
            x = values(original, name).ravel().astype(np.float64)
            x_hat = values(decoded, name).ravel().astype(np.float64)
            figures[name] = Fidelity.of(float(x @ x), float(x @ x_hat), float(x_hat @ x_hat))
    return figures
