"""The blob's other codecs (BitDelta, DARE, DeltaDQ, levels): what they keep, what they decode to, and
that hostile version 3 blobs fail cleanly. Each expected value is computed here from the codec's
definition (docs/blob-format.md, "Codecs"), not by the library."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import safetensors.numpy
import torch

from compeft_core import CompressedExpert
from compeft_core.codecs import GROUP_SIZE
from compeft_core.compress import compress
from compeft_core.errors import BlobFormatError, CompressionInputError
from compeft_core.levels import fit_levels, level_grid, pack_levels, unpack_levels
from tests.test_blob_format import _rewrite


@pytest.fixture(scope="module")
def tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(16)
    return {
        "layers.0.q_proj.lora_A.weight": torch.randn(4, 64, generator=generator),
        "layers.0.q_proj.lora_B.weight": torch.randn(48, 4, generator=generator) * 0.1,
        "layers.0.ia3.weight": torch.randn(96, generator=generator) ** 3,
    }


def _decoded(expert: CompressedExpert) -> dict[str, np.ndarray]:
    """Decoded through the blob, as a client gets it."""
    parsed = CompressedExpert.from_bytes(expert.to_bytes())
    return {name: t.numpy() for name, t in parsed.decompress(dtype=torch.float64).items()}


def test_bitdelta_keeps_every_sign_with_the_mean_magnitude_per_matrix(tensors):
    expert = compress(tensors, codec="bitdelta")
    assert (expert.codec, expert.density, expert.factorisation, expert.scale) == (
        "bitdelta",
        1.0,
        "as-trained",
        "entry",
    )
    for name, values in _decoded(expert).items():
        x = tensors[name].double().numpy()
        expected = np.sign(x) * np.abs(x).mean()  # BitDelta's L2-optimal scale
        np.testing.assert_allclose(values, expected, rtol=1e-6)


def test_bitdelta_fixes_its_density(tensors):
    with pytest.raises(CompressionInputError, match="keeps every entry"):
        compress(tensors, codec="bitdelta", density=0.5)


@pytest.mark.parametrize("value_bits", [1, 3, 8])
def test_levels_decode_to_the_nearest_grid_point_of_each_kept_magnitude(tensors, value_bits):
    """Top-k entries with magnitude levels: the same kept set as ComPEFT, signs kept, and each
    decoded magnitude the grid point nearest to |x| / M of its tensor."""
    expert = compress(tensors, density=0.25, value_bits=value_bits, factorisation="as-trained")
    signs_only = _decoded(compress(tensors, density=0.25, factorisation="as-trained"))
    grid = level_grid(value_bits)
    for name, values in _decoded(expert).items():
        x = tensors[name].double().numpy()
        kept = values != 0
        np.testing.assert_array_equal(kept, signs_only[name] != 0)
        np.testing.assert_array_equal(np.sign(values[kept]), np.sign(x[kept]))
        scale = expert.default_alphas[name] * expert.sigmas[name]
        relative = np.abs(x[kept]) / scale
        nearest = grid[np.abs(relative[:, None] - grid[None, :]).argmin(axis=1)]
        np.testing.assert_allclose(np.abs(values[kept]) / scale, nearest, rtol=1e-6)


def test_more_value_bits_decode_closer(tensors):
    errors = []
    for bits in (0, 1, 2, 4, 8):
        decoded = _decoded(
            compress(tensors, density=1.0, value_bits=bits, factorisation="as-trained")
        )
        errors.append(
            sum(float(((tensors[n].double().numpy() - v) ** 2).sum()) for n, v in decoded.items())
        )
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 0.01 * errors[0]


def test_dare_keeps_a_random_subset_rescaled_by_one_over_the_density(tensors):
    density = 0.3
    expert = compress(tensors, codec="dare", density=density, value_bits=8, seed=3)
    for name, values in _decoded(expert).items():
        x = tensors[name].double().numpy()
        kept = values != 0
        assert kept.sum() == round(density * x.size)
        # Not the top-k: some kept entry is smaller than some dropped one.
        assert np.abs(x[kept]).min() < np.abs(x[~kept]).max()
        rescaled = x[kept] / density
        step = np.abs(values[kept]).max() * 2 / (2 * 256 - 1)
        assert np.abs(values[kept] - rescaled).max() <= step / 2 * 1.0001


@pytest.mark.parametrize("codec", ["dare", "deltadq"])
def test_random_codecs_are_reproducible_by_seed(tensors, codec):
    first = compress(tensors, codec=codec, seed=1).to_bytes()
    assert compress(tensors, codec=codec, seed=1).to_bytes() == first
    assert compress(tensors, codec=codec, seed=2).to_bytes() != first


@pytest.mark.parametrize("density", [0.1, 0.3])
def test_deltadq_keeps_the_same_share_of_every_group_rescaled(tensors, density):
    """Group-wise dropout: each run of GROUP_SIZE consecutive entries of a tensor (row-major,
    so along the input dimension) keeps density x GROUP_SIZE entries to within one, the tensor
    exactly round(density x n); kept values are x / density on the uniform 8-bit grid."""
    expert = compress(tensors, codec="deltadq", density=density, value_bits=8, seed=5)
    assert (expert.codec, expert.value_bits, expert.factorisation) == ("deltadq", 8, "as-trained")
    for name, values in _decoded(expert).items():
        x = tensors[name].double().numpy().reshape(-1)
        kept = values.reshape(-1) != 0
        assert kept.sum() == round(density * x.size)
        padded = np.concatenate([kept, np.zeros(-x.size % GROUP_SIZE, bool)])
        per_group = padded.reshape(-1, GROUP_SIZE).sum(axis=1)[: x.size // GROUP_SIZE]
        assert np.abs(per_group - density * GROUP_SIZE).max() < 1
        assert np.abs(x[kept]).min() < np.abs(x[~kept]).max()  # random, not the top-k
        decoded = values.reshape(-1)[kept]
        step = np.abs(decoded).max() * 2 / (2 * 256 - 1)
        assert np.abs(decoded - x[kept] / density).max() <= step / 2 * 1.0001


def test_deltadq_groups_draw_different_entries_in_each_group():
    """The share is the same, the entries are not: the positions kept differ between groups."""
    tensors = {"w": torch.rand(64, 64, generator=torch.Generator().manual_seed(0)) + 0.5}
    kept = _decoded(compress(tensors, codec="deltadq", density=0.25))["w"].reshape(-1, 16) != 0
    assert (kept.sum(axis=1) == 4).all()
    assert len({tuple(row) for row in kept}) > 100


def test_compeft_blobs_stay_version_2_and_the_others_say_their_codec(tensors):
    compeft_blob = compress(tensors).to_bytes()
    assert _metadata(compeft_blob)["version"] == "2"
    assert "method" not in _metadata(compeft_blob)
    for codec, bits in (("bitdelta", "0"), ("dare", "4"), ("deltadq", "4")):
        metadata = _metadata(compress(tensors, codec=codec).to_bytes())
        assert (metadata["version"], metadata["method"], metadata["value_bits"]) == (
            "3",
            codec,
            bits,
        )
        parsed = CompressedExpert.from_bytes(compress(tensors, codec=codec).to_bytes())
        assert parsed.metadata["codec"] == codec


def test_dare_measures_fidelity_on_the_decoded_product(tensors):
    expert = compress(tensors, codec="dare", density=0.5, measure_fidelity=True)
    decoded = _decoded(expert)
    a, b = (decoded[f"layers.0.q_proj.lora_{h}.weight"] for h in "AB")
    x = (
        tensors["layers.0.q_proj.lora_B.weight"] @ tensors["layers.0.q_proj.lora_A.weight"]
    ).double()
    x = x.numpy()
    expected = np.linalg.norm(x - b @ a) / np.linalg.norm(x)
    assert expert.fidelity["layers.0.q_proj"].relative_error == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"codec": "zip"}, "codec must be one of compeft, bitdelta, dare, deltadq"),
        ({"codec": "deltadq", "density": 1.5}, r"density must be in \(0, 1\]"),
        ({"codec": "deltadq", "alpha": 0.5}, "scale must be 'entry' and alpha None"),
        ({"codec": "dare", "value_bits": 9}, "value_bits must be an integer from 0 to 8"),
        ({"value_bits": 2.5}, "value_bits must be an integer"),
        ({"codec": "dare", "scale": "unbiased"}, "scale must be 'entry' and alpha None"),
        ({"value_bits": 2, "alpha": 1.0}, "scale must be 'entry' and alpha None"),
    ],
)
def test_bad_codec_arguments_are_refused(tensors, arguments, message):
    with pytest.raises(CompressionInputError, match=message):
        compress(tensors, **arguments)


def test_levels_pack_and_fit():
    levels = np.array([0, 5, 7, 2, 1], dtype=np.uint8)
    packed = pack_levels(levels, 3)
    assert packed.size == 2  # 15 bits
    np.testing.assert_array_equal(unpack_levels(packed, 5, 3), levels)
    magnitudes = np.array([1.0, 2.0, 3.0])
    scale, fitted = fit_levels(magnitudes, 0)
    assert scale == pytest.approx(2.0)  # sign only: the mean magnitude, ComPEFT's alpha
    assert fitted.tolist() == [0, 0, 0]


def _metadata(blob: bytes) -> dict[str, str]:
    (length,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + length])["__metadata__"]


@pytest.fixture(scope="module")
def dare_blob(tensors) -> bytes:
    return compress(tensors, codec="dare", density=0.2, value_bits=3).to_bytes()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a, m: m.update(method="delta-zip"), "unknown codec 'delta-zip'"),
        (lambda a, m: m.update(value_bits="9"), "invalid value_bits '9'"),
        (lambda a, m: m.update(value_bits="2"), "level bytes"),
        (lambda a, m: a.update(levels=a["levels"][:-1]), "level bytes"),
    ],
)
def test_inconsistent_version_3_blobs_raise_clear_errors(dare_blob, edit, message):
    with pytest.raises(BlobFormatError, match=message):
        CompressedExpert.from_bytes(_rewrite(dare_blob, edit))


def test_a_version_3_blob_without_levels_is_refused(dare_blob):
    arrays = dict(safetensors.numpy.load(dare_blob))
    del arrays["levels"]
    missing = safetensors.numpy.save(arrays, metadata=_metadata(dare_blob))
    with pytest.raises(BlobFormatError, match="expected"):
        CompressedExpert.from_bytes(missing)


def test_every_truncation_and_bit_flip_of_a_version_3_blob_is_an_error(dare_blob):
    for cut in range(0, len(dare_blob), 5):
        with pytest.raises(BlobFormatError):
            CompressedExpert.from_bytes(dare_blob[:cut]).decompress()
    for position in range(0, len(dare_blob), 3):
        flipped = bytearray(dare_blob)
        flipped[position] ^= 1 << (position % 8)
        try:
            expert = CompressedExpert.from_bytes(bytes(flipped))
        except BlobFormatError:
            continue
        # A flip the checksum cannot see (header whitespace, JSON-equivalent) decodes the same.
        assert expert.to_bytes() == dare_blob
