"""LoRA experts for the quality evaluation: training, storing in fp16, writing into a model, scoring.

Forward and backward passes run under bf16 autocast: on the 2 shared CPU cores this evaluation
was sized for, that is about 3x faster than float32 (the weights, the optimizer and the stored
adapters stay in float32 / fp16). Scoring is rank classification: the label whose first token the
model rates highest after the prompt, computed from the last prompt position's hidden state and
the label rows of the output embedding only.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils.save_and_load import get_peft_model_state_dict, set_peft_model_state_dict
from transformers import PreTrainedModel

from bench.quality_tasks import Encoded
from compeft_core.fewshot import IGNORE_INDEX, causal_lm_batch, pad_rows
from compeft_core.peft_io import write_adapter_folder

BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
TARGETS = ("q_proj", "v_proj")
RANK = 8


def lora_config() -> LoraConfig:
    """r=8 on q_proj and v_proj, as tests/test_smollm2_adapter.py and bench/compose.py use."""
    return LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=list(TARGETS),
                      task_type="CAUSAL_LM", base_model_name_or_path=BASE_MODEL)


def lora_config_dict() -> dict[str, object]:
    """The adapter_config.json peft would write (sets as sorted lists)."""
    return {key: sorted(value) if isinstance(value, set) else value
            for key, value in lora_config().to_dict().items()}


def _autocast() -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16)


def in_bf16(loss: Callable[[torch.nn.Module], float]) -> Callable[[torch.nn.Module], float]:
    """`loss` run under the same bf16 autocast as training and scoring (a LoraHub search's
    few-shot loss, for one)."""

    def run(model: torch.nn.Module) -> float:
        with _autocast():
            return loss(model)

    return run


def train_lora(base: PreTrainedModel, data: Encoded, *, steps: int, batch_size: int, lr: float,
               seed: int, pad_token_id: int) -> dict[str, torch.Tensor]:
    """A fresh LoRA trained on the answers only (prompt tokens labelled -100), in fp16.

    The model is wrapped for the run and unwrapped after, so `base` is left as it was. Batches are
    drawn from a seeded shuffle of the training split, epoch after epoch.
    """
    torch.manual_seed(seed)
    model = get_peft_model(base, lora_config())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    order = _batches(len(data.prompts), batch_size, seed)
    model.train()
    try:
        for _ in range(steps):
            rows = next(order)
            batch = causal_lm_batch([data.prompts[i] for i in rows],
                                    [data.answers[i] for i in rows], pad_token_id)
            with _autocast():
                logits = model(input_ids=batch["input_ids"],
                               attention_mask=batch["attention_mask"]).logits[:, :-1]
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                   batch["labels"][:, 1:].reshape(-1),
                                   ignore_index=IGNORE_INDEX)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        return {key: value.detach().to(torch.float16)
                for key, value in get_peft_model_state_dict(model).items()}
    finally:
        model.eval()
        model.unload()


def _batches(count: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    generator = random.Random(seed)
    while True:
        order = list(range(count))
        generator.shuffle(order)
        for start in range(0, count - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


def save_expert(folder: Path, tensors: Mapping[str, torch.Tensor]) -> Path:
    """adapter_config.json + fp16 adapter_model.safetensors, loadable by PeftModel.from_pretrained."""
    return write_adapter_folder(folder, lora_config_dict(),
                                {k: v.to(torch.float16) for k, v in tensors.items()})


@contextmanager
def lora_model(base: PreTrainedModel) -> Iterator[PeftModel]:
    """`base` wrapped with one (zero-update) LoRA whose weights `set_lora` rewrites in place;
    unwrapped on exit, so a LoraComposer can wrap the same base model afterwards."""
    model = get_peft_model(base, lora_config()).eval()
    try:
        yield model
    finally:
        model.unload()


def set_lora(model: PeftModel, tensors: Mapping[str, torch.Tensor], scale: float = 1.0) -> None:
    """Write an adapter state dict (keys as peft saves them), times `scale`, into `model`."""
    result = set_peft_model_state_dict(
        model, {k: v.to(torch.float32) * scale for k, v in tensors.items()})
    if result.unexpected_keys:
        raise ValueError(f"not LoRA weights of this model: {result.unexpected_keys[:3]}")


def accuracy(model: torch.nn.Module, data: Encoded, pad_token_id: int, batch_size: int = 32
             ) -> float:
    """Share of examples whose gold label's first token scores highest among the labels.

    `model` is a PeftModel, or a plain causal LM (the base model alone).
    """
    causal_lm = model.get_base_model() if isinstance(model, PeftModel) else model
    label_rows = causal_lm.get_output_embeddings().weight[data.label_tokens]
    order = sorted(range(len(data.prompts)), key=lambda i: len(data.prompts[i]))
    correct = 0
    with torch.no_grad(), _autocast():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            prompts = [data.prompts[i] for i in rows]
            hidden = causal_lm.model(input_ids=pad_rows(prompts, pad_token_id),
                                     attention_mask=pad_rows([[1] * len(p) for p in prompts], 0)
                                     ).last_hidden_state
            last = hidden[torch.arange(len(rows)), torch.tensor([len(p) - 1 for p in prompts])]
            predicted = (last.float() @ label_rows.T.float()).argmax(dim=1).tolist()
            correct += sum(p == data.gold[i] for p, i in zip(predicted, rows, strict=True))
    return correct / len(data.prompts)

