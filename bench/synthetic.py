"""Synthetic LLaMA-shaped LoRA adapters with heavy-tailed values, for benchmarks and size tests."""

from __future__ import annotations

from pathlib import Path

import torch

from compeft_core.peft_io import write_adapter_folder

LLAMA_7B = "meta-llama/Llama-2-7b-hf"


def llama_lora(
    *,
    layers: int,
    hidden: int,
    rank: int,
    modules: dict[str, int],
    seed: int = 0,
    dtype: torch.dtype = torch.float16,
    student_t_df: float = 4.0,
) -> dict[str, torch.Tensor]:
    """A peft-style LoRA state dict: for each layer and module, A (rank, hidden), B (out, rank).

    `modules` maps a module name (e.g. "q_proj") to its output size. Values are Student-t
    distributed, which is closer to trained LoRA weights than a Gaussian (heavy tails).
    """
    generator = torch.Generator().manual_seed(seed)
    student_t = torch.distributions.StudentT(student_t_df)
    tensors: dict[str, torch.Tensor] = {}

    def sample(shape: tuple[int, int]) -> torch.Tensor:
        # StudentT has no generator argument: draw it as normal / sqrt(chi2 / df) ourselves.
        normal = torch.randn(shape, generator=generator)
        chi2 = 2 * torch._standard_gamma(torch.full(shape, student_t.df / 2))
        return (normal / torch.sqrt(chi2 / student_t.df)).to(dtype)

    for layer in range(layers):
        for module, out_features in modules.items():
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = sample((rank, hidden))
            tensors[f"{prefix}.lora_B.weight"] = sample((out_features, rank))
    return tensors


def llama7b_qv_r16(seed: int = 0) -> dict[str, torch.Tensor]:
    """LLaMA-7B, r=16 on q and v: 128 tensors, 8,388,608 parameters."""
    return llama_lora(
        layers=32, hidden=4096, rank=16, modules={"q_proj": 4096, "v_proj": 4096}, seed=seed
    )


def smollm2_qv_r8() -> dict[str, torch.Tensor]:
    """SmolLM2-135M, r=8 on q and v: 120 tensors, 460,800 parameters."""
    return llama_lora(layers=30, hidden=576, rank=8, modules={"q_proj": 576, "v_proj": 192})


def llama_32m() -> dict[str, torch.Tensor]:
    """A 33.5M-parameter adapter: LLaMA-7B, r=32 on q, k, v and o (256 tensors)."""
    return llama_lora(
        layers=32,
        hidden=4096,
        rank=32,
        modules={m: 4096 for m in ("q_proj", "k_proj", "v_proj", "o_proj")},
    )


def write_lora_folder(
    folder: Path, tensors: dict[str, torch.Tensor], *, base_model: str = LLAMA_7B
) -> Path:
    """A peft LoRA folder of `tensors` (from `llama_lora`), its config read off the tensors.

    Rank and target modules come from the tensor names and shapes, so the config cannot
    disagree with the weights; lora_alpha = 2r as is common.
    """
    rank = next(t.shape[0] for name, t in tensors.items() if ".lora_A." in name)
    modules = sorted({name.split(".lora_")[0].rsplit(".", 1)[1] for name in tensors})
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": rank,
        "lora_alpha": 2 * rank,
        "lora_dropout": 0.0,
        "target_modules": modules,
        "bias": "none",
    }
    return write_adapter_folder(folder, config, tensors)
