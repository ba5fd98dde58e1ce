"""The few-shot loss that composition searches minimize: cross-entropy of the answers only.

Causal LMs see prompt + answer as one sequence; prompt (and padding) positions are labelled -100,
so only answer tokens are scored. Seq2seq models get the prompt as encoder input and the answer as
labels. Unlike LoraHub's reference code (a batch mean, summed over batches, divided again by the
number of examples), the loss is the mean over all answer tokens, whatever the batch size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

from compeft_core.errors import CompositionError

IGNORE_INDEX = -100


def pad_rows(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """Right-pad token rows with `value` to the longest one: a [rows, width] tensor."""
    width = max(len(row) for row in rows)
    return torch.tensor([list(row) + [value] * (width - len(row)) for row in rows])


def tokenize_examples(
    tokenizer: PreTrainedTokenizerBase,
    inputs: Sequence[str],
    outputs: Sequence[str],
    *,
    seq2seq: bool,
) -> tuple[list[list[int]], list[list[int]]]:
    """(prompt ids, answer ids): the answer is tokenized on its own, plus EOS for causal LMs.

    Seq2seq tokenizers (T5) add EOS to the answer themselves; causal LM tokenizers add BOS (if
    any) to the prompt only, so the answer tokens are the same whatever the prompt.
    """
    prompts = [tokenizer(text)["input_ids"] for text in inputs]
    if seq2seq:
        return prompts, [tokenizer(text)["input_ids"] for text in outputs]
    eos = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    return prompts, [
        tokenizer(text, add_special_tokens=False)["input_ids"] + eos for text in outputs
    ]


def causal_lm_batch(
    prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]], pad_token_id: int
) -> dict[str, torch.Tensor]:
    """A causal LM batch of prompt + answer sequences; only answer positions carry labels."""
    sequences = [list(p) + list(a) for p, a in zip(prompts, answers, strict=True)]
    labels = [[IGNORE_INDEX] * len(p) + list(a) for p, a in zip(prompts, answers, strict=True)]
    return {
        "input_ids": pad_rows(sequences, pad_token_id),
        "attention_mask": pad_rows([[1] * len(s) for s in sequences], 0),
        "labels": pad_rows(labels, IGNORE_INDEX),
    }


class FewShotLoss:
    """Mean answer-token cross-entropy of a model on a few (prompt, answer) examples.

    Calling it runs one forward pass per batch under no_grad and returns a float; the batches are
    built once here and moved to the model's device on first use.
    """

    def __init__(
        self,
        prompts: Sequence[Sequence[int]],
        answers: Sequence[Sequence[int]],
        *,
        seq2seq: bool,
        pad_token_id: int = 0,
        batch_size: int | None = None,
    ) -> None:
        if not prompts or len(prompts) != len(answers):
            raise CompositionError(
                f"need as many answers as prompts, at least one; got "
                f"{len(prompts)} prompts and {len(answers)} answers"
            )
        if any(not p for p in prompts) or any(not a for a in answers):
            raise CompositionError("every prompt and every answer needs at least one token")
        self.seq2seq = seq2seq
        self.num_examples = len(prompts)
        size = batch_size or len(prompts)
        self._batches = [
            self._batch(prompts[i : i + size], answers[i : i + size], pad_token_id)
            for i in range(0, len(prompts), size)
        ]
        self._num_tokens = sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in self._batches)

    @classmethod
    def from_text(
        cls,
        tokenizer: PreTrainedTokenizerBase,
        inputs: Sequence[str],
        outputs: Sequence[str],
        *,
        seq2seq: bool,
        batch_size: int | None = None,
    ) -> FewShotLoss:
        """The loss of text examples, tokenized by `tokenize_examples`; padded with the pad
        token (or EOS)."""
        prompts, answers = tokenize_examples(tokenizer, inputs, outputs, seq2seq=seq2seq)
        pad = next(
            (t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id) if t is not None), 0
        )
        return cls(prompts, answers, seq2seq=seq2seq, pad_token_id=pad, batch_size=batch_size)

    def _batch(
        self, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]], pad_token_id: int
    ) -> dict[str, torch.Tensor]:
        if self.seq2seq:
            return {
                "input_ids": pad_rows(prompts, pad_token_id),
                "attention_mask": pad_rows([[1] * len(p) for p in prompts], 0),
                "labels": pad_rows(answers, IGNORE_INDEX),
            }
        return causal_lm_batch(prompts, answers, pad_token_id)

    @property
    def num_tokens(self) -> int:
        """How many answer tokens are scored."""
        return self._num_tokens

    def __call__(self, model: torch.nn.Module) -> float:
        """The loss of `model` as it is now (its train/eval mode is left as it is)."""
        device = next(model.parameters()).device
        if self._batches[0]["input_ids"].device != device:
            self._batches = [{k: v.to(device) for k, v in b.items()} for b in self._batches]
        total = torch.zeros((), dtype=torch.float64, device=device)
        with torch.no_grad():
            for batch in self._batches:
                labels = batch["labels"]
                if self.seq2seq:  # the model builds decoder inputs from the labels
                    logits = model(**batch).logits
                else:
                    logits = model(
                        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                    ).logits[:, :-1]
                    labels = labels[:, 1:]
                total += F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]).float(),
                    labels.reshape(-1),
                    ignore_index=IGNORE_INDEX,
                    reduction="sum",
                )
        return float(total) / self._num_tokens
