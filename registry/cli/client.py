"""The client half of `compeft-hub`: upload, pull, export, search and whoami (list, info and
delete are in `experts.py`, merge and compose in `compose.py`).

Each command is a thin shell over `registry.client`: it builds a HubClient from the options (or
COMPEFT_HUB_ENDPOINT / COMPEFT_HUB_TOKEN / COMPEFT_HUB_CACHE), calls it, and prints. Results go to
stdout, progress bars and errors to stderr; an error a person can fix prints one line and exits 1.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from compeft_core.formats import MAX_VALUE_BITS, CodecName
from registry.cli.compose import compose, merge
from registry.cli.experts import codec_label, delete, info, list_experts
from registry.cli.extras import needs_extra
from registry.cli.options import (
    Alpha,
    DatasetFilter,
    Endpoint,
    ExpertArgument,
    Force,
    LicenseFilter,
    Token,
    VariantFilter,
    open_client,
    output_folder,
    reported_errors,
    table_console,
)
from registry.cli.tokens import token_access, token_state
from registry.errors import listed_names


def upload(
    folder: Annotated[
        Path,
        typer.Argument(
            help="PEFT adapter folder (adapter_config.json + adapter_model.safetensors).",
            exists=True,
            file_okay=False,
            show_default=False,
        ),
    ],
    expert: Annotated[
        str, typer.Argument(help="owner/name to upload to (owner: your user).", show_default=False)
    ],
    description: Annotated[
        str,
        typer.Option(
            "--description",
            "-d",
            help="What the expert does, in words; search matches on it.",
            show_default=False,
        ),
    ],
    sample: Annotated[
        list[str] | None,
        typer.Option(
            help="An example input of the task (repeatable); improves search.", show_default=False
        ),
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option(help="A tag (repeatable).", show_default=False)
    ] = None,
    density: Annotated[
        float | None,
        typer.Option(
            help="Fraction of entries ComPEFT keeps, in (0, 1] (default: the hub's).",
            show_default=False,
        ),
    ] = None,
    scope: Annotated[
        Literal["tensor", "global"] | None,
        typer.Option(
            help="Top-k and sigma per tensor or over all tensors (default: the hub's).",
            show_default=False,
        ),
    ] = None,
    factorisation: Annotated[
        Literal["as-trained", "balanced"] | None,
        typer.Option(
            help="Compress LoRA factors as uploaded, or balanced (B = U√S, A = √S Vᵀ, same product) "
            "first (default: the hub's).",
            show_default=False,
        ),
    ] = None,
    scale: Annotated[
        Literal["entry", "unbiased"] | None,
        typer.Option(
            help="Default alphas: the paper's per-tensor one (entry), or per LoRA module the product "
            "scale unbiased along the update (default: the hub's).",
            show_default=False,
        ),
    ] = None,
    codec: Annotated[
        CodecName | None,
        typer.Option(
            help="The delta codec: compeft (top-k signs), bitdelta (every sign, one scale per "
            "tensor) or dare (a random subset rescaled by 1/density, with magnitude levels) "
            "(default: the hub's).",
            show_default=False,
        ),
    ] = None,
    value_bits: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=MAX_VALUE_BITS,
            help="Magnitude bits stored per kept entry, 0 for the sign only (default: the "
            "codec's, dare 4, the others 0).",
            show_default=False,
        ),
    ] = None,
    base_model: Annotated[
        str | None,
        typer.Option(
            "--base-model",
            help="The base model's hub id, e.g. HuggingFaceTB/SmolLM2-135M-Instruct (default: "
            "base_model_name_or_path of adapter_config.json; give this when that is a local path).",
            show_default=False,
        ),
    ] = None,
    base_model_variant: Annotated[
        str | None,
        typer.Option(
            help="The base model as the adapter was trained on it: full-precision, or its "
            "quantisation, e.g. nf4 or rtn-4bit-g128 (default: not stated).",
            show_default=False,
        ),
    ] = None,
    license: Annotated[
        str | None,
        typer.Option(
            help="License id, e.g. apache-2.0 (default: `license:` in the folder's README.md "
            "front matter).",
            show_default=False,
        ),
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            help="Hub id of a training data set (repeatable; default: `datasets:` in the folder's "
            "README.md front matter).",
            show_default=False,
        ),
    ] = None,
    message: Annotated[
        str | None,
        typer.Option(
            "--message",
            "-m",
            help="What this revision changes, like a commit message (shown by `info` and on the "
            "expert's page).",
            show_default=False,
        ),
    ] = None,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Upload a PEFT adapter as the next revision of owner/name; the hub compresses it and keeps
    the folder's README.md (model card), which `export` writes back.

    Uploading what the latest revision already holds makes no new revision: the hub says so and
    answers that revision.
    """
    with reported_errors(), open_client(endpoint, token) as client:
        created = client.upload(
            folder,
            expert,
            description=description,
            samples=sample or (),
            tags=tag or (),
            density=density,
            scope=scope,
            factorisation=factorisation,
            scale=scale,
            codec=codec,
            value_bits=value_bits,
            message=message,
            base_model=base_model,
            base_model_variant=base_model_variant,
            license=license,
            datasets=dataset or None,  # none given: the model card's
        )
    for warning in created.warnings:
        typer.echo(f"warning: {warning}", err=True)
    fidelity = created.fidelity
    typer.echo(
        f"{created.id}@{created.revision}: {created.original_bytes} -> "
        f"{created.blob_bytes} bytes ({created.compression_ratio_fp16:.1f}x vs fp16, "
        f"{created.compression_ratio:.1f}x vs the uploaded file, "
        f"{created.bits_per_param:.2f} bits/param, "
        f"{codec_label(created.codec, created.value_bits)}, density {created.density:g}, "
        f"{created.factorisation}"
        + (
            f"; fidelity: cosine {fidelity.cosine.mean:.2f}, relative error "
            f"{fidelity.relative_error.mean:.2f}, module means)"
            if fidelity
            else ")"
        )
    )


def pull(expert: ExpertArgument, endpoint: Endpoint = None, token: Token = None) -> None:
    """Download an expert's compressed blob into the cache (verified, resumable); print its path."""
    with reported_errors(), open_client(endpoint, token) as client:
        typer.echo(client.pull(expert))


@needs_extra("torch")
def export(
    expert: ExpertArgument,
    out: Annotated[
        Path, typer.Argument(help="Folder to write (created if missing).", show_default=False)
    ],
    alpha: Alpha = None,
    force: Force = False,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Decompress an expert into a PEFT folder that peft.PeftModel.from_pretrained loads."""
    with reported_errors(), open_client(endpoint, token) as client:
        output_folder(out, force)
        typer.echo(client.export_peft(expert, out, alpha=alpha))


def search(
    base_model: Annotated[
        str | None,
        typer.Option(
            help="Base model id, as the adapters' configs name it (default: the hub's only one).",
            show_default=False,
        ),
    ] = None,
    query: Annotated[
        str | None, typer.Argument(help="The task in words.", show_default=False)
    ] = None,
    k: Annotated[int, typer.Option("-k", "--top-k", help="How many experts at most.", min=1)] = 5,
    example: Annotated[
        list[str] | None,
        typer.Option(
            help="An input of the task (repeatable); searched with the query or alone.",
            show_default=False,
        ),
    ] = None,
    peft_type: Annotated[
        str | None, typer.Option(help="Only this PEFT type, e.g. LORA.", show_default=False)
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(help="Only experts with this tag (repeatable).", show_default=False),
    ] = None,
    license: LicenseFilter = None,
    dataset: DatasetFilter = None,
    base_model_variant: VariantFilter = None,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Find the experts of a base model that fit a task, best first."""
    with reported_errors(), open_client(endpoint, token) as client:
        base_model = base_model or _only_base_model(client.base_models())
        hits = client.search(
            query,
            example or (),
            base_model=base_model,
            k=k,
            peft_type=peft_type,
            tags=tag or (),
            license=license,
            dataset=dataset,
            base_model_variant=base_model_variant,
        )
    table = Table(
        "#",
        "expert",
        "score",
        "dense/desc/lex",
        "type",
        "tags",
        "task",
        title=f"experts for {base_model}",
        caption="score: the task's, the description's (embeddings) and the n-grams' cosines "
        "fused; -: none yet",
    )
    table.columns[1].no_wrap = True
    for hit in hits:
        revision, parts = hit.revision, hit.score_parts
        table.add_row(
            str(hit.rank),
            f"{hit.id}@{revision.revision}",
            f"{hit.score:.3f}",
            "/".join(_part(part) for part in (parts.dense, parts.description, parts.lexical)),
            revision.peft_type,
            ", ".join(revision.tags),
            revision.task_description,
        )
    table_console().print(table)


def whoami(endpoint: Endpoint = None, token: Token = None) -> None:
    """Print the user the token belongs to, then the token: lookup id, access, expiry.

    Fails (exit 1) with the hub's reason when the token is unknown, revoked or expired.
    """
    with reported_errors(), open_client(endpoint, token) as client:
        me = client.whoami()
    info = me.token
    label = "" if info.name is None else f" {info.name!r}"
    typer.echo(me.user)
    typer.echo(
        f"token {info.lookup_id}{label}: {token_access(info)}, "
        f"{token_state(info, datetime.now(UTC))}"
    )


def register(app: typer.Typer) -> None:
    """Add the client commands to the `compeft-hub` app."""
    for command in (upload, pull, export, search, info, delete, merge, compose, whoami):
        app.command()(command)
    app.command("list")(list_experts)


def _part(score: float | None) -> str:
    """One part of a hit's score, two decimals; `-` where the expert has no vector for it yet."""
    return "-" if score is None else f"{score:.2f}"


def _only_base_model(known: list[str]) -> str:
    """The hub's one base model, said on stderr; ValueError naming the choices otherwise."""
    if len(known) == 1:
        typer.echo(f"base model: {known[0]} (the hub's only one)", err=True)
        return known[0]
    if not known:
        raise ValueError("the hub has no experts yet, so there is nothing to search")
    raise ValueError(f"give --base-model: the hub has experts of {listed_names(known)}")
