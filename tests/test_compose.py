"""LoraHub composition with real peft: a tiny LLaMA (causal LM) and a tiny T5 (seq2seq).

Experts are LoRA adapters trained for 40 steps on toy token tasks whose answers live in disjoint
token ranges, so each expert lowers the loss of its own task far more than the others do.
"""

from __future__ import annotations

import math

import nevergrad as ng
import pytest
import torch
from peft import LoraConfig, PeftModel
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import compeft_core.compose
from compeft_core import CompositionError, CompressedExpert
from compeft_core.compose import LoraComposer, compose
from compeft_core.compress import compress
from compeft_core.fewshot import FewShotLoss
from compeft_core.lora_expert import LoraExpert
from compeft_core.lorahub import chosen_optimizer, lorahub_search, search_alphas
from compeft_core.peft_io import read_adapter_folder
from tests.fixtures.toy_experts import LLAMA, TASKS, examples, llama_base, t5_base, train_expert
from tests.test_peft_io import save_trained_adapter


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and the test machine's cores are shared."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def few_shot_loss(task: str, seq2seq: bool = False) -> FewShotLoss:
    return FewShotLoss(*examples(task, 5, seed=7, seq2seq=seq2seq), seq2seq=seq2seq)


@pytest.fixture(scope="module")
def llama_experts(tmp_path_factory) -> list[LoraExpert]:
    folder = tmp_path_factory.mktemp("llama_experts")
    return [train_expert(folder, task, seq2seq=False) for task in TASKS]


@pytest.fixture(scope="module")
def t5_experts(tmp_path_factory) -> list[LoraExpert]:
    folder = tmp_path_factory.mktemp("t5_experts")
    return [train_expert(folder, task, seq2seq=True) for task in TASKS]


@pytest.fixture(scope="module")
def rank2_expert(tmp_path_factory) -> LoraExpert:
    """Another rank, other modules, rsLoRA scaling: composable exactly only with "cat"."""
    folder = tmp_path_factory.mktemp("rank2") / "rank2"
    save_trained_adapter(
        folder, LoraConfig(r=2, lora_alpha=16, use_rslora=True, target_modules=["q_proj", "k_proj"])
    )
    return LoraExpert.from_adapter("rank2", read_adapter_folder(folder))


def compressed(expert: LoraExpert, scope: str = "tensor") -> LoraExpert:
    """The expert after compress -> blob bytes -> parse -> decompress with default alphas."""
    blob = CompressedExpert.from_bytes(compress(expert.tensors, 0.3, scope).to_bytes())
    return LoraExpert.from_compressed(expert.name, blob, expert.config)


def largest_weight(weights: dict[str, float]) -> str:
    return max(weights, key=lambda name: abs(weights[name]))


def test_each_trained_expert_is_best_on_its_own_task(llama_experts):
    for task in TASKS:
        losses = {}
        for expert in llama_experts:
            composer = LoraComposer(llama_base(), [expert], mode="cat")
            composer.apply([1.0])
            losses[expert.name] = few_shot_loss(task)(composer.peft_model)
        assert min(losses, key=losses.get) == task


@pytest.mark.parametrize("task", ["shift", "reverse_shift"])
def test_lorahub_lowers_causal_few_shot_loss_and_weights_the_matching_expert(llama_experts, task):
    composer = LoraComposer(llama_base(), llama_experts, mode="lorahub")
    result = lorahub_search(composer, few_shot_loss(task), budget=30, seed=0)
    assert result.loss_after < result.loss_before - 0.5
    assert largest_weight(result.weights) == task and result.weights[task] > 0
    assert all(-1.5 <= w <= 1.5 for w in result.weights.values())
    assert result.mode == "lorahub" and result.search.budget == 30 and result.search.seed == 0
    assert len(result.search.history) == 31 and result.search.history[0].values == (0.0,) * 3


def test_result_records_the_optimizer_nevergrad_chose_and_its_version(llama_experts):
    composer = LoraComposer(llama_base(), llama_experts, mode="lorahub")
    result = lorahub_search(composer, few_shot_loss("copy"), budget=6)
    search = result.search
    assert search.optimizer_requested == "NGOpt" and search.nevergrad_version == ng.__version__
    assert search.optimizer_chosen in ng.optimizers.registry
    concrete = ng.optimizers.registry[search.optimizer_chosen](ng.p.Array(shape=(3,)), budget=6)
    assert chosen_optimizer(concrete) == search.optimizer_chosen != "NGOpt"


def test_lorahub_lowers_seq2seq_few_shot_loss(t5_experts):
    composer = LoraComposer(t5_base(), t5_experts, mode="lorahub")
    result = lorahub_search(composer, few_shot_loss("shift", seq2seq=True), budget=30, seed=0)
    assert result.loss_after < result.loss_before - 0.5
    assert largest_weight(result.weights) == "shift" and result.weights["shift"] > 0


def test_composition_of_compressed_experts_lowers_the_loss(llama_experts):
    experts = [compressed(e) for e in llama_experts]
    composer = LoraComposer(llama_base(), experts, mode="lorahub")
    result = lorahub_search(composer, few_shot_loss("reverse_shift"), budget=30, seed=0)
    assert result.loss_after < result.loss_before - 0.5
    assert largest_weight(result.weights) == "reverse_shift"


def test_search_writes_in_place_and_never_rebuilds_the_model(llama_experts, monkeypatch):
    built = []
    original = compeft_core.compose.get_peft_model
    monkeypatch.setattr(
        compeft_core.compose,
        "get_peft_model",
        lambda *args, **kwargs: built.append(1) or original(*args, **kwargs),
    )
    base = llama_base()
    forwards = []
    base.register_forward_pre_hook(lambda module, args: forwards.append(1))
    composer = LoraComposer(base, llama_experts, mode="lorahub")

    def lora_parameters():
        return {
            n: (id(p), p.data_ptr())
            for n, p in composer.peft_model.named_parameters()
            if "lora_" in n
        }

    before = lora_parameters()
    steps = []
    result = lorahub_search(
        composer,
        few_shot_loss("copy"),
        budget=12,
        on_step=lambda step, total, loss: steps.append((step, total, loss)),
    )
    assert lora_parameters() == before and len(before) == 2 * 4 * LLAMA.num_hidden_layers
    distinct_candidates = {s.values for s in result.search.history}
    assert len(built) == 1 and len(forwards) == len(distinct_candidates) <= 1 + 12
    assert steps == [(s.step, 12, s.loss) for s in result.search.history[1:]]


def test_objective_is_lorahubs_own_up_to_the_number_of_examples(llama_experts):
    """The reference scores loss / n + 0.05 mean|w| (its loss divides by the examples), so ours,
    on the mean loss, must be n times that: an L1 weight of 0.05 x n, not 0.05."""
    composer = LoraComposer(llama_base(), llama_experts, mode="lorahub")
    loss = few_shot_loss("shift")
    result = lorahub_search(composer, loss, budget=6, seed=0)
    assert loss.num_examples == 5
    for step in result.search.history:
        reference = step.loss / 5 + 0.05 * sum(abs(w) for w in step.values) / len(step.values)
        assert step.objective == pytest.approx(5 * reference, rel=1e-12)
    with pytest.raises(CompositionError, match="pass regularization=lorahub_regularization"):
        lorahub_search(composer, lambda model: loss(model), budget=2)
    plain = lorahub_search(composer, lambda model: loss(model), budget=2, regularization=0.0)
    assert all(s.objective == s.loss for s in plain.search.history)


@pytest.mark.parametrize("optimizer", ["NGOpt", "OnePlusOne"])
def test_same_seed_same_search(llama_experts, optimizer):
    composer = LoraComposer(llama_base(), llama_experts, mode="lorahub")
    loss = few_shot_loss("shift")
    runs = [
        lorahub_search(composer, loss, budget=8, optimizer=optimizer, seed=seed)
        for seed in (3, 3, 4)
    ]
    assert runs[0].search.history == runs[1].search.history
    assert runs[0].weights == runs[1].weights
    if optimizer == "OnePlusOne":  # Cobyla, NGOpt's choice here, is deterministic
        assert runs[0].search.history != runs[2].search.history


def delta_weights(model: PeftModel) -> dict[str, torch.Tensor]:
    """scaling * B @ A of every LoRA module, as peft computes it."""
    prefix = "base_model.model."
    return {
        name.removeprefix(prefix): module.get_delta_weight("default")
        for name, module in model.named_modules()
        if hasattr(module, "get_delta_weight") and "default" in getattr(module, "lora_A", {})
    }


def own_scaling(expert: LoraExpert) -> float:
    config = expert.config
    rank = config["r"]
    return config["lora_alpha"] / (math.sqrt(rank) if config.get("use_rslora") else rank)


def test_cat_update_is_exactly_the_weighted_sum_of_expert_updates(
    llama_experts, rank2_expert, tmp_path
):
    experts = [llama_experts[0], llama_experts[1], rank2_expert]
    weights = [0.7, -0.4, 1.3]
    composer = LoraComposer(llama_base(), experts, mode="cat")
    composer.apply(weights)
    deltas = delta_weights(composer.peft_model)
    paths = {
        k.removeprefix("base_model.model.").rsplit(".lora_", 1)[0]
        for e in experts
        for k in e.tensors
    }
    assert set(deltas) == paths
    for path, delta in deltas.items():
        expected = sum(
            w * own_scaling(e) * e.modules[path].b @ e.modules[path].a
            for e, w in zip(experts, weights)
            if path in e.modules
        )
        torch.testing.assert_close(delta, expected, rtol=1e-5, atol=1e-6)

    adapter = composer.adapter()
    fixed = compose(experts, weights, mode="cat")
    assert adapter.config == fixed.config and adapter.config["r"] == 4 + 4 + 2
    assert all(torch.equal(adapter.tensors[k], fixed.tensors[k]) for k in fixed.tensors)
    reloaded = PeftModel.from_pretrained(llama_base(), fixed.save(tmp_path / "cat"))
    tokens = torch.tensor([[5, 9, 14, 2, 30]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(tokens).logits, composer.peft_model(tokens).logits)


def test_lorahub_mode_refuses_other_ranks_or_modules_and_cat_composes_them(
    llama_experts, rank2_expert
):
    experts = [llama_experts[1], rank2_expert]
    with pytest.raises(CompositionError, match="differ in rank or target modules.*mode='cat'"):
        LoraComposer(llama_base(), experts, mode="lorahub")
    with pytest.raises(CompositionError, match="differ in rank or target modules"):
        compose(experts, [1.0, 1.0], mode="lorahub")
    result = lorahub_search(
        LoraComposer(llama_base(), experts, mode="cat"), few_shot_loss("shift"), budget=15, seed=0
    )
    assert result.loss_after < result.loss_before - 0.5 and result.mode == "cat"


def test_fixed_weight_lorahub_sums_a_and_b_separately(llama_experts):
    weights = [0.5, -1.0, 0.25]
    composed = compose(llama_experts, weights, mode="lorahub")
    assert composed.config == {
        **llama_experts[0].config,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
        "trainable_token_indices": None,
    }
    assert composed.tensors.keys() == llama_experts[0].tensors.keys()
    for key, tensor in composed.tensors.items():
        expected = sum(w * e.tensors[key] for e, w in zip(llama_experts, weights))
        torch.testing.assert_close(tensor, expected)


def test_lorahub_mode_keeps_each_experts_own_scaling(llama_experts):
    expert = llama_experts[0]
    stronger = LoraExpert("stronger", {**expert.config, "lora_alpha": 32}, expert.tensors)
    composed = compose([expert, stronger], [0.0, 1.0], mode="lorahub")
    for path, module in stronger.modules.items():
        a = composed.tensors[f"base_model.model.{path}.lora_A.weight"]
        b = composed.tensors[f"base_model.model.{path}.lora_B.weight"]
        torch.testing.assert_close(
            own_scaling(expert) * b @ a, own_scaling(stronger) * module.b @ module.a
        )


def test_unusable_experts_and_arguments_are_refused(llama_experts):
    expert = llama_experts[0]
    dora = LoraExpert("dora", {**expert.config, "use_dora": True}, expert.tensors)
    with pytest.raises(CompositionError, match="use_dora"):
        compose([dora], [1.0])
    ia3 = LoraExpert("ia3", {"peft_type": "IA3"}, expert.tensors)
    with pytest.raises(CompositionError, match="IA3"):
        compose([ia3], [1.0])
    with pytest.raises(CompositionError, match="unique"):
        compose([expert, expert], [1.0, 1.0])
    with pytest.raises(CompositionError, match="3 finite numbers"):
        compose(llama_experts, [1.0, 2.0])
    with pytest.raises(CompositionError, match="unknown nevergrad optimizer"):
        lorahub_search(
            LoraComposer(llama_base(), [expert]), few_shot_loss("copy"), optimizer="NoSuchOptimizer"
        )


def test_alpha_search_is_never_worse_than_the_default_alpha(llama_experts):
    expert = llama_experts[1]
    blob = CompressedExpert.from_bytes(compress(expert.tensors, 0.3, "global").to_bytes())
    loaded = LoraExpert.from_compressed("shift", blob, expert.config)
    assert loaded.alpha == pytest.approx(float(blob.alpha[0]))
    loss = few_shot_loss("shift")
    result = search_alphas(LoraComposer(llama_base(), [loaded], mode="cat"), loss, budget=12)
    assert result.loss_after <= result.loss_start
    assert result.alphas["shift"] == pytest.approx(result.scales["shift"] * loaded.alpha)

    again = LoraExpert.from_compressed("shift", blob, expert.config, alpha=result.alphas["shift"])
    composer = LoraComposer(llama_base(), [again], mode="cat")
    composer.apply([1.0])
    assert loss(composer.peft_model) == pytest.approx(result.loss_after, abs=1e-5)


def test_shared_alpha_search_uses_one_scale(llama_experts):
    experts = [compressed(e) for e in llama_experts[:2]]
    assert all(e.alpha is None for e in experts)  # per-tensor default alphas
    result = search_alphas(
        LoraComposer(llama_base(), experts, mode="cat"),
        few_shot_loss("copy"),
        weights=[1.0, 0.5],
        shared=True,
        budget=8,
    )
    assert len(set(result.scales.values())) == 1 and result.alphas == {"copy": None, "shift": None}
    assert all(len(step.values) == 1 for step in result.search.history)
    assert result.weights == {"copy": 1.0, "shift": 0.5} and result.loss_after <= result.loss_start


def test_causal_loss_scores_answer_tokens_only_whatever_the_batch_size():
    model = llama_base()
    prompts, answers = examples("copy", 4, seed=3)
    prompts[1] = prompts[1][2:]  # unequal lengths exercise the padding
    one_batch = FewShotLoss(prompts, answers, seq2seq=False)
    assert one_batch.num_tokens == sum(len(a) for a in answers)
    assert FewShotLoss(prompts, answers, seq2seq=False, batch_size=3)(model) == pytest.approx(
        one_batch(model), rel=1e-6
    )
    total = 0.0
    with torch.no_grad():
        for prompt, answer in zip(prompts, answers):
            log_probs = model(torch.tensor([prompt + answer])).logits[0].log_softmax(-1)
            total -= sum(log_probs[len(prompt) - 1 + i, t] for i, t in enumerate(answer))
    assert one_batch(model) == pytest.approx(float(total) / one_batch.num_tokens, rel=1e-5)


def test_few_shots_from_text_add_eos_to_causal_answers():
    vocab = {word: i for i, word in enumerate(["[PAD]", "[EOS]", "[UNK]", *"abcdefgh"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", eos_token="[EOS]", unk_token="[UNK]"
    )
    model = llama_base()
    from_text = FewShotLoss.from_text(tokenizer, ["a b c", "d e"], ["f", "g h"], seq2seq=False)
    from_ids = FewShotLoss([[3, 4, 5], [6, 7]], [[8, 1], [9, 10, 1]], seq2seq=False)
    assert from_text.num_tokens == 5
    assert from_text(model) == pytest.approx(from_ids(model))
