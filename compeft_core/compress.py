"""`compress`: ComPEFT sparsification + ternarization of a set of tensors.

For each scope segment (each tensor, or all tensors together), exactly k = round(density * n)
entries of largest magnitude are kept (ties broken by position: the earliest win), each kept entry
becomes sign(x), and the segment stores sigma = the standard deviation (population, computed in
float64, stored as float32) of its dense values. Tensors are ordered by name, so positions (and the
global scope's tie-breaking) do not depend on the mapping's insertion order.

Two choices go beyond the paper, for LoRA pairs only (`compeft_core.lora_gauge`,
`compeft_core.lora_scales`; docs/factorisation.md has the measurements that chose the defaults):
- `factorisation="balanced"` re-factors each pair as B' = U√S, A' = √S Vᵀ (same product) before
  compressing; "as-trained" compresses A and B as uploaded, as the paper and its code do.
- `scale="unbiased"` gives each pair the product scale c that makes the compressed update
  unbiased along the original, ⟨c T_B T_A, ΔW⟩ = ‖ΔW‖², split as √c on each factor; "entry" keeps
  the paper's per-segment L2-optimal alpha.
Other tensors ((IA)^3 vectors, residuals, lone halves) always take the paper's path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import torch

from compeft_core.codecs import DEFAULT_DENSITY, Codec, checked_value_bits, codec_named
from compeft_core.errors import CompressionInputError
from compeft_core.expert import SCALES, SCOPES, CompressedExpert
from compeft_core.fidelity import Fidelity
from compeft_core.formats import FLOAT32_MAX
from compeft_core.lora_gauge import FACTORISATIONS, LoraPair, lora_pairs
from compeft_core.lora_scales import (
    TensorLayout,
    Ternaries,
    balance_pairs,
    measured_fidelity,
    pair_moments,
    unbiased_alphas,
)
from compeft_core.rans import encode_bytes
from compeft_core.ternary import pack_ternary, segment_moments, select_thresholds
from compeft_core.valued import decoded_fidelity, level_values, random_ternary

_FLOAT_DTYPES = {
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.float32: "float32",
    torch.float64: "float64",
}
MAX_EXTRA_CHARS = 4096


def beyond_float32(name: str) -> str:
    """The refusal of a tensor holding values that float32 does not."""
    return (
        f"{name}: holds values beyond the float32 range (+-{FLOAT32_MAX:.4g}), the precision "
        "ComPEFT computes in; rescale it"
    )


def _check_arguments(
    tensors: Mapping[str, torch.Tensor],
    density: float,
    scope: str,
    alpha: float | None,
    extra: Mapping[str, str],
    factorisation: str,
    scale: str,
) -> None:
    if not isinstance(density, (int, float)) or not 0 < density <= 1:
        raise CompressionInputError(f"density must be in (0, 1], got {density!r}")
    if scope not in SCOPES:
        raise CompressionInputError(f"scope must be one of {SCOPES}, got {scope!r}")
    if factorisation not in FACTORISATIONS:
        raise CompressionInputError(
            f"factorisation must be one of {FACTORISATIONS}, got {factorisation!r}"
        )
    if scale not in SCALES:
        raise CompressionInputError(f"scale must be one of {SCALES}, got {scale!r}")
    if alpha is not None and not (isinstance(alpha, (int, float)) and abs(alpha) <= FLOAT32_MAX):
        raise CompressionInputError(
            f"alpha must be a finite number within the float32 range (it is stored as float32) "
            f"or None, got {alpha!r}"
        )
    if not tensors:
        raise CompressionInputError("nothing to compress: no tensors given")
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not name:
            raise CompressionInputError(f"tensor names must be non-empty strings, got {name!r}")
        if not isinstance(tensor, torch.Tensor):
            raise CompressionInputError(f"{name}: expected a torch.Tensor, got {type(tensor)}")
        if tensor.dtype not in _FLOAT_DTYPES:
            raise CompressionInputError(
                f"{name}: dtype {tensor.dtype} is not a floating point type; ComPEFT compresses "
                "float16, bfloat16, float32 or float64 task vectors"
            )
        if tensor.numel() == 0:
            raise CompressionInputError(f"{name}: empty tensor (shape {tuple(tensor.shape)})")
    if (
        not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items())
        or sum(len(k) + len(v) for k, v in extra.items()) > MAX_EXTRA_CHARS
    ):
        raise CompressionInputError(
            f"extra metadata must be str -> str, {MAX_EXTRA_CHARS} chars max"
        )


def as_float32_array(tensor: torch.Tensor) -> np.ndarray:
    """Exact float32 values through numpy, which converts in the calling thread.

    torch's conversions run on its intra-op thread pool, whose spinning threads slow down by an
    order of magnitude when the machine's cores are busy with other work.
    """
    if tensor.dtype == torch.bfloat16:
        widened = tensor.view(torch.int16).numpy().astype(np.int32) << 16
        return widened.view(np.float32)
    with np.errstate(over="ignore"):  # float64 beyond float32's range: `_unrepresentable` says so
        return tensor.numpy().astype(np.float32, copy=False)


def _unrepresentable(
    names: list[str], ordered: list[torch.Tensor], flat: np.ndarray
) -> CompressionInputError:
    """The error naming the first tensor with a value float32 does not hold.

    Called once the segment moments are not finite, which happens only if `flat` holds NaN or
    infinity (sums of finite float32 values and of their squared deviations cannot overflow
    float64), so some tensor always qualifies: NaN or infinity in the input, or a float64 value
    beyond float32's range.
    """
    ends = np.cumsum([t.numel() for t in ordered])
    name, tensor = next(
        (name, tensor)
        for name, tensor, end in zip(names, ordered, ends, strict=True)
        if not np.isfinite(flat[end - tensor.numel() : end]).all()
    )
    if torch.isfinite(tensor).all():
        return CompressionInputError(beyond_float32(name))
    return CompressionInputError(f"{name}: contains NaN or infinite values")


def _segments(layout: TensorLayout, scope: str) -> tuple[np.ndarray, np.ndarray]:
    if scope == "global":
        return np.zeros(1, dtype=np.int64), layout.ends[-1:]
    return layout.starts, layout.ends


def _codec_choices(
    codec: str,
    density: float | None,
    factorisation: str | None,
    scale: str | None,
    alpha: float | None,
    value_bits: int | None,
) -> tuple[Codec, float, str, str, int]:
    """(codec, density, factorisation, scale, value bits): the caller's, else the codec's."""
    chosen = codec_named(codec)
    if chosen.density is not None and density not in (None, chosen.density):
        raise CompressionInputError(
            f"codec {codec} keeps every entry: density is {chosen.density}, not {density!r}"
        )
    bits = checked_value_bits(chosen, value_bits)
    scale = scale or ("entry" if bits else chosen.scale)
    if (bits or chosen.selection == "random") and (scale != "entry" or alpha is not None):
        raise CompressionInputError(
            f"codec {codec} with {bits} value bits fits each segment's alpha to the kept "
            "magnitudes: scale must be 'entry' and alpha None"
        )
    density = density if density is not None else chosen.density or DEFAULT_DENSITY
    return chosen, density, factorisation or chosen.factorisation, scale, bits


def compress(
    tensors: Mapping[str, torch.Tensor],
    density: float | None = None,
    scope: str = "tensor",
    alpha: float | None = None,
    extra: Mapping[str, str] | None = None,
    factorisation: str | None = None,
    scale: str | None = None,
    measure_fidelity: bool = False,
    codec: str = "compeft",
    value_bits: int | None = None,
    seed: int = 0,
) -> CompressedExpert:
    """Compress task-vector tensors with one of the blob's codecs (`compeft_core.codecs`).

    `codec` names the rule (ComPEFT's top-k signs by default); `density`, `factorisation`,
    `scale` and `value_bits` left as None take that codec's defaults (density 0.1 where the
    codec does not fix it). `seed` draws DARE's and DeltaDQ's random subsets.
    `alpha=None` stores the default alpha per segment that `scale` names (see the module
    docstring); a number is stored as every segment's default instead (the blob then says
    scale "fixed"). `factorisation` says in which gauge LoRA pairs are compressed; an expert
    without LoRA pairs records "as-trained" and "entry", the path it took. `extra` is carried
    verbatim in the blob metadata (for example the sha256 of the PEFT config).
    `measure_fidelity` fills the expert's `fidelity` (`compeft_core.fidelity`), computed here
    from what compression already holds, far cheaper than decoding the blob again.
    """
    extra = dict(extra or {})
    chosen, density, factorisation, scale, bits = _codec_choices(
        codec, density, factorisation, scale, alpha, value_bits
    )
    _check_arguments(tensors, density, scope, alpha, extra, factorisation, scale)
    names = sorted(tensors)
    ordered = [tensors[name].detach() for name in names]
    shapes = [tuple(t.shape) for t in ordered]
    sizes = [t.numel() for t in ordered]
    flat = np.empty(sum(sizes), dtype=np.float32)
    offset = 0
    for tensor, size in zip(ordered, sizes, strict=True):
        flat[offset : offset + size] = as_float32_array(tensor.reshape(-1).cpu())
        offset += size
    layout = TensorLayout.of(names, shapes, sizes)
    starts, ends = _segments(layout, scope)
    sums, squares = segment_moments(flat, starts, ends)
    if not (np.isfinite(sums).all() and np.isfinite(squares).all()):
        raise _unrepresentable(names, ordered, flat)
    pairs = lora_pairs(names, shapes)
    if factorisation == "balanced" and pairs:
        balance_pairs(flat, layout, pairs, beyond_float32)
        sums, squares = segment_moments(flat, starts, ends)
    counts = ends - starts
    ks = np.array([round(density * int(c)) for c in counts], dtype=np.int64)
    sigma = np.sqrt(squares / counts).astype(np.float32)
    common = {
        "names": tuple(names),
        "shapes": tuple(shapes),
        "dtypes": tuple(_FLOAT_DTYPES[t.dtype] for t in ordered),
        "scope": scope,
        "density": float(density),
        "sigma": sigma,
        "extra": extra,
        "codec": chosen.name,
        # What was done, not what was asked: without LoRA pairs the paper's path applied.
        "factorisation": factorisation if pairs else "as-trained",
    }
    if bits or chosen.selection == "random":
        return _valued_expert(flat, layout, pairs, ks, chosen, bits, seed, measure_fidelity, common)
    bits_view = flat.view(np.uint32)
    thresholds, ties = select_thresholds(bits_view, starts, ends, ks)
    mask, signs, kept, abs_sums = pack_ternary(flat, bits_view, starts, ends, ks, thresholds, ties)
    mask_words, stream_words = encode_bytes(mask, kept, int(counts.sum()))
    ternaries = Ternaries(layout, mask, signs)
    unbiased = alpha is None and scale == "unbiased" and bool(pairs)
    # The pairs' inner products serve both the unbiased scale and the fidelity: computed once.
    moments = (
        pair_moments(flat, ternaries, pairs, with_ternary_norm=measure_fidelity)
        if unbiased or measure_fidelity
        else None
    )
    if alpha is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            optimal = (abs_sums / np.maximum(ks, 1)) / sigma.astype(np.float64)
        default_alpha = np.where((ks > 0) & (sigma > 0), optimal, 0.0).astype(np.float32)
        if unbiased and moments is not None:
            default_alpha = unbiased_alphas(pairs, moments, scope, sigma, default_alpha)
    else:
        default_alpha = np.full(len(sigma), alpha, dtype=np.float32)
    fidelity: dict[str, Fidelity] = {}
    if measure_fidelity and moments is not None:
        segment_of = np.arange(len(names)) if scope == "tensor" else np.zeros(len(names), int)
        decoded_scales = (default_alpha.astype(np.float64) * sigma.astype(np.float64))[segment_of]
        fidelity = measured_fidelity(flat, ternaries, pairs, moments, decoded_scales)
    return CompressedExpert(
        **common,
        alpha=default_alpha,
        mask_words=mask_words,
        mask_streams=tuple(stream_words),
        signs=signs,
        kept=int(kept),
        scale="fixed" if alpha is not None else scale if pairs else "entry",
        fidelity=fidelity,
    )


def _valued_expert(
    flat: np.ndarray,
    layout: TensorLayout,
    pairs: list[LoraPair],
    ks: np.ndarray,
    chosen: Codec,
    bits: int,
    seed: int,
    measure_fidelity: bool,
    common: dict,
) -> CompressedExpert:
    """The expert of a codec that selects at random or stores magnitude levels: each segment's
    alpha is fitted with its levels (`compeft_core.levels`), so its scale is "entry"."""
    starts, ends = _segments(layout, common["scope"])
    if chosen.selection == "random":
        mask, signs, kept = random_ternary(
            flat, layout, (starts, ends), ks, common["density"], chosen, seed
        )
    else:
        bits_view = flat.view(np.uint32)
        thresholds, ties = select_thresholds(bits_view, starts, ends, ks)
        mask, signs, kept, _ = pack_ternary(flat, bits_view, starts, ends, ks, thresholds, ties)
    mask_words, stream_words = encode_bytes(mask, kept, flat.size)
    rescale = 1 / common["density"] if chosen.rescale else 1.0
    fitted = level_values(flat, mask, ends, bits, rescale)
    sigma = common["sigma"].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        default_alpha = np.where(sigma > 0, fitted.magnitudes / sigma, 0.0).astype(np.float32)
    expert = CompressedExpert(
        **common,
        alpha=default_alpha,
        mask_words=mask_words,
        mask_streams=tuple(stream_words),
        signs=signs,
        kept=kept,
        scale="entry",
        value_bits=bits,
        levels=fitted.packed_levels,
    )
    if not measure_fidelity:
        return expert
    decoded = np.concatenate(
        [array.reshape(-1) for array in expert.decompress_numpy(dtype=np.float64).values()]
    )
    return dataclasses.replace(expert, fidelity=decoded_fidelity(flat, decoded, layout, pairs))
