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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from peft.utils.save_and_load import get_peft_model_state_dict, set_peft_model_state_dict
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bench.quality_tasks import Encoded, LabelTask
from compeft_core.fewshot import IGNORE_INDEX, causal_lm_batch, pad_rows
from compeft_core.peft_io import write_adapter_folder

BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass(frozen=True)
class ExpertKind:
    """What a library's LoRA experts adapt and how long the inputs they were trained on are."""

    name: str
    targets: tuple[str, ...]
    rank: int
    max_input_tokens: int

    def lora_config(self) -> LoraConfig:
        return LoraConfig(
            r=self.rank,
            lora_alpha=2 * self.rank,
            target_modules=list(self.targets),
            task_type="CAUSAL_LM",
            base_model_name_or_path=BASE_MODEL,
        )

    def config_dict(self) -> dict[str, object]:
        """The adapter_config.json peft would write (sets as sorted lists)."""
        return {
            key: sorted(value) if isinstance(value, set) else value
            for key, value in self.lora_config().to_dict().items()
        }


# The first library (32-token inputs, as tests/test_smollm2_adapter.py and bench/compose.py use);
# the second adapts every linear layer, as practitioners train, on inputs twice as long.
Q_V = ExpertKind("q-v", ("q_proj", "v_proj"), rank=8, max_input_tokens=32)
ALL_MODULES = ExpertKind(
    "all-modules",
    ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    rank=8,
    max_input_tokens=64,
)


@dataclass(frozen=True)
class Schedule:
    """How long to train: up to `max_steps`, scored on validation every `eval_every` steps, and
    stopped once `patience` scores in a row have not beaten the best (whose weights are kept)."""

    max_steps: int
    eval_every: int
    patience: int
    batch_size: int
    lr: float


@dataclass(frozen=True)
class Trained:
    tensors: dict[str, torch.Tensor]  # fp16, the best validation score's
    best_step: int
    steps: int
    validation: dict[int, float]  # step -> validation accuracy


def _autocast() -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16)


def in_bf16(loss: Callable[[torch.nn.Module], float]) -> Callable[[torch.nn.Module], float]:
    """`loss` run under the same bf16 autocast as training and scoring (a LoraHub search's
    few-shot loss, for one)."""

    def run(model: torch.nn.Module) -> float:
        with _autocast():
            return loss(model)

    return run


def train_lora(
    base: PreTrainedModel,
    kind: ExpertKind,
    train: Encoded,
    validation: Encoded,
    schedule: Schedule,
    seed: int,
    pad_token_id: int,
    progress: Callable[[int, float], None] = lambda step, score: None,
) -> Trained:
    """A fresh LoRA trained on the answers only (prompt tokens labelled -100), kept in fp16 at
    its best validation accuracy after the first update (the base model's score, at step 0,
    counts for stopping only: an expert of zeros would be no expert).

    The model is wrapped for the run and unwrapped after, so `base` is left as it was. Batches
    come from a seeded shuffle of the training split, epoch after epoch, grouped by length.
    `progress` hears each validation score, with its step.
    """
    torch.manual_seed(seed)
    model = get_peft_model(base, kind.lora_config())
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=schedule.lr
    )
    lengths = [len(p) + len(a) for p, a in zip(train.prompts, train.answers, strict=True)]
    order = length_grouped_batches(lengths, schedule.batch_size, seed)
    best: dict[str, torch.Tensor] = {}
    scores = {0: accuracy(model, validation, pad_token_id)}
    step = 0
    try:
        while step < schedule.max_steps and still_rising(scores, schedule.patience):
            model.train()
            for _ in range(min(schedule.eval_every, schedule.max_steps - step)):
                _answer_loss(model, train, next(order), pad_token_id).backward()
                optimizer.step()
                optimizer.zero_grad()
                step += 1
            model.eval()
            scores[step] = accuracy(model, validation, pad_token_id)
            progress(step, scores[step])
            if not best or scores[step] > max(v for k, v in scores.items() if 0 < k < step):
                best = _fp16_state(model)
        trained = {k: v for k, v in scores.items() if k > 0}
        return Trained(best, max(trained, key=lambda k: (trained[k], -k)), step, scores)
    finally:
        model.eval()
        model.unload()


def still_rising(scores: Mapping[int, float], patience: int) -> bool:
    """False once the last `patience` scores are all below or equal to the best before them."""
    steps = sorted(scores)
    if len(steps) <= patience:
        return True
    best_before = max(scores[k] for k in steps[:-patience])
    return any(scores[k] > best_before for k in steps[-patience:])


def _fp16_state(model: PeftModel) -> dict[str, torch.Tensor]:
    return {
        key: value.detach().to(torch.float16)
        for key, value in get_peft_model_state_dict(model).items()
    }


def _answer_loss(
    model: PeftModel, data: Encoded, rows: list[int], pad_token_id: int
) -> torch.Tensor:
    """Mean cross-entropy of the answer tokens; the output layer runs on those positions only
    (its 49k-word matmul over every prompt position would cost a tenth of a training step)."""
    batch = causal_lm_batch(
        [data.prompts[i] for i in rows], [data.answers[i] for i in rows], pad_token_id
    )
    causal_lm = model.get_base_model()
    with _autocast():
        hidden = causal_lm.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        targets = batch["labels"][:, 1:]
        scored = targets != IGNORE_INDEX
        logits = causal_lm.get_output_embeddings()(hidden[:, :-1][scored])
    return F.cross_entropy(logits.float(), targets[scored])


def length_grouped_batches(
    lengths: list[int], batch_size: int, seed: int, group: int = 16
) -> Iterator[list[int]]:
    """Batches of a seeded shuffle, epoch after epoch; within each window of `group` batches the
    rows are sorted by length, so a batch pads little, and the window's batches are shuffled."""
    generator = random.Random(seed)
    while True:
        order = list(range(len(lengths)))
        generator.shuffle(order)
        usable = len(order) - len(order) % batch_size
        for start in range(0, usable, batch_size * group):
            window = sorted(
                order[start : min(start + batch_size * group, usable)], key=lambda i: lengths[i]
            )
            batches = [window[i : i + batch_size] for i in range(0, len(window), batch_size)]
            generator.shuffle(batches)
            yield from batches


def save_expert(folder: Path, kind: ExpertKind, tensors: Mapping[str, torch.Tensor]) -> Path:
    """adapter_config.json + fp16 adapter_model.safetensors, loadable by PeftModel.from_pretrained."""
    return write_adapter_folder(
        folder, kind.config_dict(), {k: v.to(torch.float16) for k, v in tensors.items()}
    )


@contextmanager
def lora_model(base: PreTrainedModel, config: Mapping[str, Any]) -> Iterator[PeftModel]:
    """`base` wrapped with one (zero-update) LoRA of `config` (an adapter_config.json's
    contents: a library's, or a merged adapter's of any rank), whose weights `set_lora` rewrites
    in place; unwrapped on exit, so the same base model can be wrapped again afterwards."""
    model = get_peft_model(base, PeftConfig.from_peft_type(**config)).eval()
    try:
        yield model
    finally:
        model.unload()


def set_lora(model: PeftModel, tensors: Mapping[str, torch.Tensor], scale: float = 1.0) -> None:
    """Write an adapter state dict (keys as peft saves them), times `scale`, into `model`."""
    result = set_peft_model_state_dict(
        model, {k: v.to(torch.float32) * scale for k, v in tensors.items()}
    )
    if result.unexpected_keys:
        raise ValueError(f"not LoRA weights of this model: {result.unexpected_keys[:3]}")


@contextmanager
def lora_merged(model: torch.nn.Module) -> Iterator[None]:
    """Every active LoRA update added into its base weight for the duration, as peft's merge
    does, so that a forward pass costs the base model's alone (a third less on this CPU with r=8
    on every linear layer); the exact weights are put back afterwards, not recomputed by
    subtraction, so that scoring leaves the model bit for bit as it was."""
    layers = [
        layer
        for layer in model.modules()
        if isinstance(layer, LoraLayer) and not layer.disable_adapters and not layer.merged
    ]
    saved = [layer.get_base_layer().weight.detach().clone() for layer in layers]
    for layer in layers:
        layer.merge()
    try:
        yield
    finally:
        for layer, weight in zip(layers, saved, strict=True):
            layer.unmerge()  # peft's bookkeeping; the weight is then restored exactly
            layer.get_base_layer().weight.data.copy_(weight)


def accuracy(
    model: torch.nn.Module, data: Encoded, pad_token_id: int, batch_size: int = 32
) -> float:
    """Share of examples whose gold label's first token scores highest among the labels.

    `model` is a PeftModel, or a plain causal LM (the base model alone).
    """
    causal_lm = model.get_base_model() if isinstance(model, PeftModel) else model
    label_rows = causal_lm.get_output_embeddings().weight[data.label_tokens]
    order = sorted(range(len(data.prompts)), key=lambda i: len(data.prompts[i]))
    correct = 0
    with torch.no_grad(), lora_merged(model), _autocast():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            prompts = [data.prompts[i] for i in rows]
            hidden = causal_lm.model(
                input_ids=pad_rows(prompts, pad_token_id),
                attention_mask=pad_rows([[1] * len(p) for p in prompts], 0),
            ).last_hidden_state
            last = hidden[torch.arange(len(rows)), torch.tensor([len(p) - 1 for p in prompts])]
            predicted = (last.float() @ label_rows.T.float()).argmax(dim=1).tolist()
            correct += sum(p == data.gold[i] for p, i in zip(predicted, rows, strict=True))
    return correct / len(data.prompts)


@dataclass
class Bench:
    """The loaded model, tokenizer and tasks, with each task's splits encoded once."""

    tokenizer: PreTrainedTokenizerBase
    base: PreTrainedModel
    tasks: list[LabelTask]
    max_input_tokens: int
    data: dict[str, dict[str, Encoded]]

    @property
    def pad(self) -> int:
        return self.tokenizer.pad_token_id

    def score(self, model: torch.nn.Module, task: str, split: str) -> float:
        return accuracy(model, self.data[task][split], self.pad)
