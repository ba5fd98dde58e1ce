"""Fidelity: how far a compressed expert's update is from the original, module by module.

For a LoRA pair the update is the product B·A (what the model adds), so the error is measured on
the product, whatever gauge the blob stores its factors in; for any other tensor ((IA)^3 vectors
as their change from one, residuals) on the tensor itself. Two figures per module:
- the relative error ‖x − x̂‖ / ‖x‖ (0 is exact, 1 is as far as dropping the module);
- the cosine ⟨x, x̂⟩ / (‖x‖ ‖x̂‖), blind to the scale. The hub's default scale is unbiased along x
  (⟨x, x̂⟩ = ‖x‖²), so its relative error is tan(angle) and can exceed 1 while the expert keeps
  its skill: the cosine is the figure that follows accuracy across scale rules.

`compress(..., measure_fidelity=True)` computes them (`compeft_core.lora_scales`) from what
compression already holds, without decoding the blob.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
