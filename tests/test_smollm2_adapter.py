"""A LoRA trained on the real SmolLM2-135M survives compression and loads back into peft."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from compeft_core import CompressedExpert
from compeft_core.compress import compress
from compeft_core.export import export_adapter
from compeft_core.peft_io import read_adapter_folder
from compeft_core.task_vectors import adapter_task_vector
from tests.test_blob_format import iid_bound_bytes

pytestmark = pytest.mark.slow


def test_trained_smollm2_lora_compresses_near_the_bound_and_reloads(smollm2, tmp_path):
    tokenizer, base = smollm2
    model = get_peft_model(
        copy.deepcopy(base),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    batch = tokenizer(
        ["The capital of France is Paris.", "Two plus two is four."],
        return_tensors="pt",
        padding=True,
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    for _ in range(3):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(tmp_path / "trained")

    adapter = read_adapter_folder(tmp_path / "trained")
    assert adapter.num_params == 460_800
    task_vector = adapter_task_vector(adapter)
    assert compress(task_vector, 0.1, "global").nbytes <= 1.05 * iid_bound_bytes(460_800, 0.1)
    # After a few steps B is still tiny next to A's random init, so a global top-k keeps only A
    # entries and B decodes to zero: per-tensor scope is what keeps a young LoRA alive.
    blob_expert = CompressedExpert.from_bytes(compress(task_vector, 0.1, "tensor").to_bytes())

    folder = export_adapter(blob_expert, adapter.config, tmp_path / "export")
    reloaded = PeftModel.from_pretrained(copy.deepcopy(base), folder).eval()
    decoded = blob_expert.decompress(dtype=torch.float32)
    loaded = {n.replace(".default", ""): p for n, p in reloaded.named_parameters() if "lora_" in n}
    assert loaded.keys() == decoded.keys()
    assert all(torch.equal(loaded[n], decoded[n]) for n in decoded)
    with torch.no_grad():
        ids = tokenizer("What is the capital of France?", return_tensors="pt")
        assert not torch.equal(reloaded(**ids).logits, base(**ids).logits)
