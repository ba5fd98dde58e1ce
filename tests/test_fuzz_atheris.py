"""Coverage-guided fuzzing (atheris, libFuzzer) of the blob decoder and the upload parser.

Hypothesis fuzzes both from generated structure (tests/test_blob_format.py,
tests/test_fuzz_upload_parser.py); atheris mutates real inputs guided by which branches they reach.
Allowed outcomes: BlobFormatError for blobs; a complete upload, InvalidRequestError or
PayloadTooLargeError for request bodies. Anything else is a crash, and libFuzzer writes the input
to the artifact folder.

Each target runs in its own process (libFuzzer exits the process when done):

    python tests/test_fuzz_atheris.py blob -runs=200000 CORPUS_DIR     # a long run
    pytest tests/test_fuzz_atheris.py                                  # CI: RUNS per target
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

RUNS = int(os.environ.get("COMPEFT_HUB_ATHERIS_RUNS", "3000"))
REPOSITORY = Path(__file__).resolve().parent.parent
NUMBA_MODULES = ["compeft_core.rans", "compeft_core.ternary"]  # numba cannot compile atheris hooks
UPLOAD_SEED = (
    b'--b\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n{"task_description": "x"}'
    b'\r\n--b\r\nContent-Disposition: form-data; name="adapter_config.json"; filename="c"\r\n\r\n'
    b'{"peft_type": "LORA"}\r\n--b\r\nContent-Disposition: form-data; '
    b'name="adapter_model.safetensors"; filename="w"\r\nContent-Type: application/octet-stream'
    b"\r\n\r\n\x08\x00\x00\x00\x00\x00\x00\x00{}      \r\n--b--\r\n"
)


def blob_seed() -> bytes:
    """A small valid blob, for the fuzzer to start mutating from."""
    import torch

    from compeft_core.compress import compress

    generator = torch.Generator().manual_seed(0)
    tensors = {f"layers.{i}.lora_A.weight": torch.randn(4, 40, generator=generator) for i in (0, 1)}
    return compress(tensors, 0.2, "tensor").to_bytes()


def upload_seed() -> bytes:
    """Input layout of `fuzz_upload`: boundary length, boundary, chunk split byte, body."""
    return b"\x01b\x40" + UPLOAD_SEED


def fuzz_blob() -> Callable[[bytes], None]:
    import compeft_core.codec  # noqa: F401  (from_bytes imports it lazily: instrument it now)
    from compeft_core import BlobFormatError, CompressedExpert

    def one_input(data: bytes) -> None:
        try:
            CompressedExpert.from_bytes(data).decompress()
        except BlobFormatError:
            pass

    return one_input


def fuzz_upload() -> Callable[[bytes], None]:
    from starlette.requests import Request

    from registry.api.upload_parts import UploadLimits, receive_upload
    from registry.errors import InvalidRequestError, PayloadTooLargeError

    limits = UploadLimits(
        max_body_bytes=4096, max_config_bytes=512, max_metadata_bytes=256, max_model_card_bytes=256
    )

    def one_input(data: bytes) -> None:
        if len(data) < 2:
            return
        boundary, rest = data[1 : 1 + data[0]], data[1 + data[0] :]
        split, body = (rest[0], rest[1:]) if rest else (0, b"")
        chunks = [body[:split], body[split:]]

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}

        headers = [(b"content-type", b"multipart/form-data; boundary=" + boundary)]
        scope = {"type": "http", "method": "POST", "headers": headers, "query_string": b""}
        with tempfile.TemporaryDirectory() as folder:
            try:
                asyncio.run(receive_upload(Request(scope, receive), Path(folder), limits))
            except (InvalidRequestError, PayloadTooLargeError):
                pass

    return one_input


TARGETS = {"blob": (fuzz_blob, blob_seed), "upload": (fuzz_upload, upload_seed)}


def main(argv: list[str]) -> None:
    """`python tests/test_fuzz_atheris.py TARGET [libFuzzer options] [CORPUS_DIR]`."""
    import atheris

    target, *libfuzzer_args = argv[1:]
    make_target, _ = TARGETS[target]
    with atheris.instrument_imports(
        include=["compeft_core", "registry", "python_multipart"],
        exclude=NUMBA_MODULES,
    ):
        one_input = make_target()
    atheris.Setup([argv[0], *libfuzzer_args], one_input)
    atheris.Fuzz()


@pytest.mark.parametrize("target", TARGETS)
def test_atheris_finds_no_crash(target: str, tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris has no wheel for this platform")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "seed").write_bytes(TARGETS[target][1]())
    completed = subprocess.run(
        [
            sys.executable,
            __file__,
            target,
            f"-runs={RUNS}",
            "-max_len=4096",
            # Linux keeps a process's peak RSS across exec: the child would start at pytest's
            # size and trip libFuzzer's 2 GiB check. Inputs are bounded by -max_len anyway.
            "-rss_limit_mb=0",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert f"Done {RUNS} runs" in completed.stderr


if __name__ == "__main__":
    sys.path.insert(0, str(REPOSITORY))
    main(sys.argv)
