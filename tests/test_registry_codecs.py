"""Uploads that choose the delta codec: what the hub stores, records and answers, and what a
client decodes (the codecs' own tests are tests/test_codecs.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bench.adapter_files import DEFAULT_METADATA, lora_adapter, lora_tensors
from compeft_core import CompressedExpert
from compeft_core.codecs import GROUP_SIZE
from compeft_core.levels import level_grid
from registry.client.hub import HubClient
from tests.fixtures.live_hub import RunCli
from tests.fixtures.registry import Hub

pytestmark = pytest.mark.usefixtures("no_leftover_upload_files")


def _stored(hub: Hub, body: dict) -> CompressedExpert:
    return CompressedExpert.from_bytes(hub.store.get_bytes(body["blob_sha256"]))


def test_a_bitdelta_upload_decodes_to_every_sign_times_the_mean_magnitude(hub: Hub) -> None:
    metadata = {**DEFAULT_METADATA, "codec": "bitdelta"}
    response = hub.upload("alice/signs", lora_adapter(), token=hub.token(), metadata=metadata)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["codec"], body["value_bits"], body["density"]) == ("bitdelta", 0, 1.0)
    # BitDelta's own choices, not the server's ComPEFT defaults (balanced, unbiased).
    assert (body["factorisation"], body["scale"]) == ("as-trained", "entry")
    decoded = _stored(hub, body).decompress(dtype=torch.float64)
    for name, tensor in lora_tensors().items():
        x = tensor.double()
        torch.testing.assert_close(decoded[name], torch.sign(x) * x.abs().mean())
    detail = hub.client.get("/api/v1/experts/alice/signs/revisions/1").json()
    assert (detail["codec"], detail["value_bits"]) == ("bitdelta", 0)


def test_a_dare_upload_keeps_a_random_share_with_levels(hub: Hub) -> None:
    metadata = {**DEFAULT_METADATA, "codec": "dare", "density": 0.5, "value_bits": 3}
    body = hub.upload("alice/dare", lora_adapter(), token=hub.token(), metadata=metadata).json()
    assert (body["codec"], body["value_bits"], body["density"]) == ("dare", 3, 0.5)
    expert = _stored(hub, body)
    grid = level_grid(3)
    for name, values in expert.decompress(dtype=torch.float64).items():
        kept = values != 0
        assert int(kept.sum()) == values.numel() // 2
        magnitude = expert.default_alphas[name] * expert.sigmas[name]
        relative = (values[kept].abs() / magnitude).numpy()
        assert np.isclose(relative[:, None], grid[None, :]).any(axis=1).all()


def test_a_deltadq_upload_keeps_the_same_share_of_every_group(hub: Hub) -> None:
    metadata = {**DEFAULT_METADATA, "codec": "deltadq", "density": 0.25}
    body = hub.upload("alice/groups", lora_adapter(), token=hub.token(), metadata=metadata).json()
    assert (body["codec"], body["value_bits"], body["density"]) == ("deltadq", 4, 0.25)
    expert = _stored(hub, body)
    assert expert.codec == "deltadq"
    for name, values in expert.decompress(dtype=torch.float64).items():
        kept = (values != 0).reshape(-1)
        whole_groups = kept[: kept.numel() // GROUP_SIZE * GROUP_SIZE].reshape(-1, GROUP_SIZE)
        assert (whole_groups.sum(dim=1) == GROUP_SIZE // 4).all(), name
    detail = hub.client.get("/api/v1/experts/alice/groups/revisions/1").json()
    assert (detail["codec"], detail["value_bits"]) == ("deltadq", 4)


def test_the_server_default_codec_applies_to_uploads_that_name_none(hub: Hub) -> None:
    body = hub.upload("alice/plain", lora_adapter(), token=hub.token()).json()
    assert (body["codec"], body["value_bits"]) == ("compeft", 0)
    assert _stored(hub, body).codec == "compeft"


def test_the_sdk_and_cli_upload_with_a_codec_and_the_client_decodes_it(
    hub_client: HubClient, hub_cli: RunCli, peft_adapter_folders: list[Path]
) -> None:
    created = hub_client.upload(
        peft_adapter_folders[0], "alice/qa", description="Answer questions.", codec="dare"
    )
    assert (created.codec, created.value_bits) == ("dare", 4)
    expert = hub_client.load_expert("alice/qa@1")
    uploaded = load_file(peft_adapter_folders[0] / "adapter_model.safetensors")
    decoded = expert.decompress(dtype=torch.float32)
    assert decoded.keys() == uploaded.keys()
    for name, tensor in uploaded.items():
        assert int((decoded[name] != 0).sum()) == round(0.1 * tensor.numel())
    result = hub_cli(
        "upload",
        peft_adapter_folders[1],
        "alice/poems",
        "--description",
        "Write poems.",
        "--codec",
        "compeft",
        "--value-bits",
        "2",
    )
    assert result.exit_code == 0, result.output
    assert "compeft, 2-bit levels, density 0.1" in result.stdout
    info = hub_cli("info", "alice/poems")
    assert "compeft, 2-bit levels, density 0.1, tensor, balanced, scale entry" in info.stdout
    refused = hub_cli("upload", peft_adapter_folders[1], "alice/x", "-d", "x", "--codec", "zip")
    assert refused.exit_code != 0
    assert "compeft" in refused.output and "dare" in refused.output
