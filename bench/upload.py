"""Upload benchmark: a 64 MiB fp16 LoRA adapter through HTTP into the hub, and its blob back.

The hub runs in its own process (bench/hub_process.py) on a loopback port, once with blobs in a
local folder and once on S3 (a real SeaweedFS `weed mini` on loopback); the client is the SDK's
`HubClient`. Every step runs a few times after one warm-up; best and median are printed.

Printed per backend: upload MB/s of fp16 input (target >= 50 MB/s on 2 cores), download MB/s of
blob bytes, the HTTP body bytes each way as the server counted them, and the share of the upload
time taken by the server's CPU steps, re-run in this process on the same files right after
each upload (so both see the same load on the machine): parsing and validating the safetensors,
compressing, and measuring the fidelity of the result (target: under 20% of the upload). The
last line is one JSON object; `upload_mb_s` and `download_mb_s` are the best
runs of the slower backend, `ratio` = fp16 bytes / blob bytes.

    python -m bench.upload            # LLaMA-7B r=32 on q, k, v, o: 33.5M params, 64 MiB fp16
    python -m bench.upload --quick    # a small adapter, local backend only (used by the tests)
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.hub_process import RunningHub, WireBytes, running_hub
from bench.synthetic import llama_32m, llama_lora, write_lora_folder
from bench.timing import Timing, repeated, timed
from compeft_core.compress import compress
from compeft_core.formats import CONFIG_NAME, WEIGHTS_NAME
from compeft_core.peft_io import read_adapter
from compeft_core.task_vectors import adapter_task_vector
from registry.client import HubClient
from registry.settings import Settings

MB = 1e6
EXPERT_NAME = "upload-bench"
DESCRIPTION = "Benchmark adapter: LLaMA-7B shaped LoRA with heavy-tailed synthetic weights."


@dataclass(frozen=True)
class UploadSample:
    """One upload through HTTP, then the server's CPU steps on the same files in-process."""

    upload_s: float
    parse_s: float
    compress_s: float
    fidelity_s: float
    wire: WireBytes


@dataclass(frozen=True)
class DownloadSample:
    """One pull of the blob into an empty cache."""

    download_s: float
    wire: WireBytes
    blob_bytes: int


@dataclass(frozen=True)
class BackendResult:
    """What one blob backend measured."""

    backend: str
    uploads: list[UploadSample]
    downloads: list[DownloadSample]

    @property
    def upload(self) -> Timing:
        return Timing([sample.upload_s for sample in self.uploads])

    @property
    def parse(self) -> Timing:
        return Timing([sample.parse_s for sample in self.uploads])

    @property
    def compress(self) -> Timing:
        return Timing([sample.compress_s for sample in self.uploads])

    @property
    def fidelity(self) -> Timing:
        return Timing([sample.fidelity_s for sample in self.uploads])

    @property
    def download(self) -> Timing:
        return Timing([sample.download_s for sample in self.downloads])

    @property
    def blob_bytes(self) -> int:
        return self.downloads[-1].blob_bytes


def server_steps(folder: Path, settings: Settings) -> tuple[float, float, float]:
    """Seconds of what registry/services/ingest.py does with an upload's files: read and validate the
    adapter (safetensors parse, finite check, LoRA pairs), then compress and serialize it with
    its fidelity measured; and the fidelity's own cost, the difference to the same compression
    without it (noise can make a difference of two timings slightly negative)."""
    parse_s, adapter = timed(lambda: read_adapter(folder / CONFIG_NAME, folder / WEIGHTS_NAME))
    task_vector = adapter_task_vector(adapter)

    def compressed(measure_fidelity: bool) -> bytes:
        return compress(
            task_vector,
            density=settings.default_density,
            scope=settings.default_scope,
            factorisation=settings.default_factorisation,
            scale=settings.default_scale,
            measure_fidelity=measure_fidelity,
        ).to_bytes()

    compress_s, _ = timed(lambda: compressed(True))
    plain_s, _ = timed(lambda: compressed(False))
    return parse_s, compress_s, compress_s - plain_s


def measure_backend(
    backend: str, hub: RunningHub, folder: Path, workdir: Path, repeats: int
) -> BackendResult:
    """Upload `folder` as revisions of one expert, then pull its blob into empty caches."""
    expert = f"{hub.user}/{EXPERT_NAME}"
    settings = Settings()  # the server's defaults, which the uploads get: they name none

    runs = itertools.count(1)
    with HubClient(hub.url, hub.token, workdir / "cache", progress=False) as client:

        def upload() -> UploadSample:
            # Each run's own description: an identical upload would make no revision (and store
            # nothing), and every run must do what a first upload does.
            description = f"{DESCRIPTION} (run {next(runs)})"
            before = hub.wire()
            upload_s, _ = timed(lambda: client.upload(folder, expert, description=description))
            wire = hub.wire() - before
            return UploadSample(upload_s, *server_steps(folder, settings), wire)

        uploads = repeated(upload, repeats)

    def download() -> DownloadSample:
        cache = Path(tempfile.mkdtemp(dir=workdir, prefix="cache-"))
        with HubClient(hub.url, hub.token, cache, progress=False) as reader:
            before = hub.wire()
            download_s, path = timed(lambda: reader.pull(expert))
            return DownloadSample(download_s, hub.wire() - before, path.stat().st_size)

    return BackendResult(backend, uploads, repeated(download, repeats))


def run_backend(backend: str, folder: Path, workdir: Path, repeats: int) -> BackendResult:
    """Start the storage (for S3) and a hub on it, measure, stop both."""
    data_dir = workdir / "hub"
    data_dir.mkdir(parents=True)
    if backend == "local":
        with running_hub(data_dir, (data_dir / "blobs").as_uri()) as hub:
            return measure_backend(backend, hub, folder, workdir, repeats)
    from bench.load import seaweedfs  # starts `weed mini`, imports test fixtures: S3 only

    with (
        seaweedfs(workdir / "seaweedfs") as (s3, store_url),
        running_hub(data_dir, store_url, extra_env=s3.environment()) as hub,
    ):
        return measure_backend(backend, hub, folder, workdir, repeats)


def print_report(fp16_bytes: int, params: int, results: list[BackendResult]) -> None:
    """One block per backend: upload, download, and the server steps' share of the upload."""
    print(
        f"adapter: {params:,} params, fp16 safetensors {fp16_bytes:,} B ({fp16_bytes / MB:.1f} MB)"
    )
    for result in results:
        tag = f"[{result.backend}]"
        up, down = result.upload, result.download
        up_wire, down_wire = result.uploads[-1].wire, result.downloads[-1].wire
        print(
            f"{tag} upload    best {up.best:.3f} s = {up.rate(fp16_bytes / MB)[0]:.1f} MB/s "
            f"of fp16, median {up.median:.3f} s = {up.rate(fp16_bytes / MB)[1]:.1f} MB/s "
            f"({len(up.times)} runs); wire {up_wire.received:,} B up, {up_wire.sent:,} B down"
        )
        print(
            f"{tag} download  best {down.best * 1e3:.1f} ms = "
            f"{down.rate(result.blob_bytes / MB)[0]:.1f} MB/s of blob "
            f"({down.rate(fp16_bytes / MB)[0]:,.0f} MB/s fp16-equivalent), median "
            f"{down.median * 1e3:.1f} ms; wire {down_wire.sent:,} B down, "
            f"{down_wire.received:,} B up"
        )
        print(f"{tag} blob {result.blob_bytes:,} B: ratio {fp16_bytes / result.blob_bytes:.1f}x")
        for label, step in (
            ("parse+validate", result.parse),
            ("compress", result.compress),
            ("  of which fidelity", result.fidelity),
        ):
            print(
                f"{tag}   {label:19} best {step.best:.3f} s = {step.best / up.best:.0%} of the "
                f"best upload, median {step.median:.3f} s = {step.median / up.median:.0%}"
            )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run every backend, print the report and the final JSON line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small adapter, local backend, one run"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--backend",
        choices=("local", "s3"),
        action="append",
        help="repeat to pick several [default: both; --quick: local]",
    )
    args = parser.parse_args(argv)
    backends = args.backend or (["local"] if args.quick else ["local", "s3"])
    repeats = 1 if args.quick else args.repeats
    if args.quick:
        tensors = llama_lora(
            layers=4,
            hidden=1024,
            rank=8,
            modules={m: 1024 for m in ("q_proj", "k_proj", "v_proj", "o_proj")},
        )
    else:
        tensors = llama_32m()
    params = sum(t.numel() for t in tensors.values())
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        workdir = Path(tmp)
        folder = write_lora_folder(workdir / "adapter", tensors)
        del tensors
        fp16_bytes = (folder / WEIGHTS_NAME).stat().st_size
        results = [run_backend(backend, folder, workdir / backend, repeats) for backend in backends]
    print_report(fp16_bytes, params, results)
    summary = {
        "upload_mb_s": min(r.upload.rate(fp16_bytes / MB)[0] for r in results),
        "download_mb_s": min(r.download.rate(r.blob_bytes / MB)[0] for r in results),
        "ratio": fp16_bytes / results[0].blob_bytes,
        "upload_mb_s_median": min(r.upload.rate(fp16_bytes / MB)[1] for r in results),
        "compress_share": max(r.compress.best / r.upload.best for r in results),
        "fidelity_share": max(r.fidelity.median / r.upload.median for r in results),
        "backends": backends,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
