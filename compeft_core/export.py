"""Turn a CompressedExpert back into a PEFT adapter folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from compeft_core.expert import CompressedExpert
from compeft_core.peft_io import write_adapter_folder
from compeft_core.task_vectors import adapter_from_task_vector


def export_adapter(
    expert: CompressedExpert,
    config: dict[str, Any],
    folder: Path,
    alpha: float | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Decompress `expert` and write it with its adapter_config as a PEFT folder.

    The folder loads with `peft.PeftModel.from_pretrained(base_model, folder)`.
    """
    deltas = expert.decompress(alpha=alpha, dtype=dtype)
    return write_adapter_folder(
        folder, config, adapter_from_task_vector(config["peft_type"], deltas)
    )
