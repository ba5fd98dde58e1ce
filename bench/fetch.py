"""Fetch benchmark: 20 experts through the client SDK, compressed vs plain fp16 safetensors.

Twenty LLaMA-7B LoRA experts (r=16 on q and v, 8.4M params each, different seeds) are uploaded
to one hub running in its own process (bench/hub_process.py). The same server also serves their
original fp16 adapter_model.safetensors files as plain files (a route of the benchmark's server
only). Then all 20 are fetched both ways into fp16 tensors:

- compressed: `HubClient.load(..., dtype=float16)` into an empty cache: resolve the revision,
  download the blob, verify its sha256, decompress;
- uncompressed: one GET per file, `safetensors.torch.load` of the body (no verification).

Measured: HTTP body bytes each way as the server counted them, the whole fetch over loopback,
and the local work alone: the SDK's `load` from its warm cache with the network off (verify +
decode) and the safetensors parse of the fp16 bytes. The end-to-end time at a modelled
100 Mbit/s link is wire bytes / 12.5 MB/s + that local work (target: compressed >= 20x faster).
The last line is one JSON object with `compressed_bytes`, `uncompressed_bytes`, `speedup`.

    python -m bench.fetch            # 20 experts, 168M params, 336 MB of fp16
    python -m bench.fetch --quick    # 4 experts of 2.1M params (used by the tests)
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import safetensors.torch
import torch

from bench.hub_process import FILES_PATH, RunningHub, WireBytes, running_hub
from bench.synthetic import llama7b_qv_r16, llama_lora, write_lora_folder
from bench.timing import Timing, repeated, timed
from compeft_core.formats import WEIGHTS_NAME
from registry.client import HubClient

LINK_BYTES_PER_S = 100e6 / 8  # 100 Mbit/s
DESCRIPTION = "Benchmark expert {index}: LLaMA-7B LoRA r=16 on q and v, synthetic weights."


@dataclass(frozen=True)
class Transfer:
    """One way of fetching every expert: wire bytes and times over loopback and locally."""

    wire: WireBytes
    loopback: Timing  # the whole fetch, network included
    local: Timing  # the same result from bytes already here: decode or parse only

    def at_link(self, local_s: float) -> float:
        """Seconds at the modelled link: the bytes the server sent, plus the local work."""
        return self.wire.sent / LINK_BYTES_PER_S + local_s


def write_experts(folder: Path, count: int, quick: bool) -> list[Path]:
    """One peft folder per expert, `expert-NN`, different weights for each."""

    def tensors(seed: int) -> dict[str, torch.Tensor]:
        if quick:  # 2.1M params: big enough that the bytes saved outweigh fixed costs
            return llama_lora(
                layers=16, hidden=4096, rank=8, modules={"q_proj": 4096, "v_proj": 4096}, seed=seed
            )
        return llama7b_qv_r16(seed=seed)

    return [
        write_lora_folder(folder / f"expert-{index:02d}", tensors(index)) for index in range(count)
    ]


def upload_experts(hub: RunningHub, folders: list[Path], cache: Path) -> list[str]:
    """Upload every folder as its own expert; their `owner/name` references."""
    refs = []
    with HubClient(hub.url, hub.token, cache, progress=False) as client:
        for index, folder in enumerate(folders):
            ref = f"{hub.user}/{folder.name}"
            client.upload(folder, ref, description=DESCRIPTION.format(index=index))
            refs.append(ref)
    return refs


def measure(
    reset: Callable[[], None],
    fetch_all: Callable[[], None],
    local_all: Callable[[], None],
    hub: RunningHub,
    repeats: int,
) -> Transfer:
    """Time `fetch_all` (over loopback; its wire bytes counted) after `reset` (untimed: emptying
    the cache), then `local_all` (the local work on what was fetched), alternately.

    Alternating keeps both under the same load on a shared machine.
    """

    def step() -> tuple[float, float, WireBytes]:
        reset()
        before = hub.wire()
        loopback_s, _ = timed(fetch_all)
        wire = hub.wire() - before
        local_s, _ = timed(local_all)
        return loopback_s, local_s, wire

    samples = repeated(step, repeats)
    return Transfer(
        samples[-1][2], Timing([s[0] for s in samples]), Timing([s[1] for s in samples])
    )


def compressed_transfer(hub: RunningHub, refs: list[str], cache: Path, repeats: int) -> Transfer:
    """`HubClient.load` of every expert into fp16: from an empty cache, then from the warm one
    with the network off (what remains is the SDK's local work: sha256 check and decode)."""
    with (
        HubClient(hub.url, hub.token, cache, progress=False) as online,
        HubClient(hub.url, hub.token, cache, progress=False, offline=True) as offline,
    ):

        def load_all(client: HubClient) -> None:
            for ref in refs:
                client.load(ref, dtype=torch.float16)

        return measure(
            lambda: shutil.rmtree(cache, ignore_errors=True),
            lambda: load_all(online),
            lambda: load_all(offline),
            hub,
            repeats,
        )


def uncompressed_transfer(hub: RunningHub, folders: list[Path], repeats: int) -> Transfer:
    """A GET of every original fp16 safetensors file, parsed into tensors; then the parse alone
    of the same bytes. Nothing is verified or written to disk: the baseline is made cheap."""
    urls = [f"{hub.url}{FILES_PATH}/{folder.name}/{WEIGHTS_NAME}" for folder in folders]
    bodies: list[bytes] = []

    with httpx.Client() as client:

        def fetch_all() -> None:
            for url in urls:
                response = client.get(url)
                response.raise_for_status()
                bodies.append(response.content)
                safetensors.torch.load(response.content)

        def parse_all() -> None:
            for body in bodies:
                safetensors.torch.load(body)

        return measure(bodies.clear, fetch_all, parse_all, hub, repeats)


def print_report(
    experts: int, params: int, upload: float, compressed: Transfer, uncompressed: Transfer
) -> dict[str, float]:
    """A table of both ways, then the modelled speedup at the best and the median local times."""
    print(f"{experts} experts, {params:,} params each; upload of all: {upload:.1f} s")
    print(
        f"{'':14}{'wire down B':>14}{'wire up B':>11}{'loopback best/median s':>25}"
        f"{'local best/median s':>22}{'at 100 Mbit/s s':>18}"
    )
    for label, way in (("compressed", compressed), ("uncompressed", uncompressed)):
        print(
            f"{label:14}{way.wire.sent:>14,}{way.wire.received:>11,}"
            f"{way.loopback.best:>15.3f} / {way.loopback.median:.3f}"
            f"{way.local.best:>13.3f} / {way.local.median:.3f}"
            f"{way.at_link(way.local.best):>18.2f}"
        )
    speedup = uncompressed.at_link(uncompressed.local.best) / compressed.at_link(
        compressed.local.best
    )
    speedup_median = uncompressed.at_link(uncompressed.local.median) / compressed.at_link(
        compressed.local.median
    )
    print(
        f"bytes: {uncompressed.wire.sent / compressed.wire.sent:.1f}x fewer compressed; "
        f"at 100 Mbit/s: {speedup:.1f}x faster end to end (best local times), "
        f"{speedup_median:.1f}x (median)"
    )
    return {"speedup": speedup, "speedup_median": speedup_median}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, write and upload the experts, fetch both ways, print the report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="4 experts of 2.1M params, one run")
    parser.add_argument("--experts", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    count = 4 if args.quick else args.experts
    repeats = 1 if args.quick else args.repeats
    with tempfile.TemporaryDirectory(prefix="bench-fetch-") as tmp:
        workdir = Path(tmp)
        folders = write_experts(workdir / "experts", count, args.quick)
        params = sum(
            t.numel() for t in safetensors.torch.load_file(folders[0] / WEIGHTS_NAME).values()
        )
        data_dir = workdir / "hub"
        data_dir.mkdir()
        with running_hub(
            data_dir, (data_dir / "blobs").as_uri(), static_dir=workdir / "experts"
        ) as hub:
            upload_s, refs = timed(lambda: upload_experts(hub, folders, workdir / "cache-upload"))
            compressed = compressed_transfer(hub, refs, workdir / "cache", repeats)
            uncompressed = uncompressed_transfer(hub, folders, repeats)
    speedups = print_report(count, params, upload_s, compressed, uncompressed)
    summary = {
        "compressed_bytes": compressed.wire.sent,
        "uncompressed_bytes": uncompressed.wire.sent,
        **speedups,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
