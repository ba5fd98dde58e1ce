"""`compeft-hub list`, `info` and `delete`: the catalogue from the command line, as
huggingface_hub users know `list_models`, `model_info` and `delete_repo`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from registry.cli.options import (
    DatasetFilter,
    Endpoint,
    ExpertArgument,
    LicenseFilter,
    Token,
    VariantFilter,
    open_client,
    reported_errors,
    table_console,
)
from registry.wire.accounts import format_utc
from registry.wire.experts import ExpertOrder

MAX_LISTED = 100  # the API's page size limit


def list_experts(
    owner: Annotated[
        str | None, typer.Option(help="Only this owner's.", show_default=False)
    ] = None,
    base_model: Annotated[
        str | None, typer.Option(help="Only experts of this base model.", show_default=False)
    ] = None,
    tag: Annotated[
        str | None, typer.Option(help="Only experts with this tag.", show_default=False)
    ] = None,
    license: LicenseFilter = None,
    dataset: DatasetFilter = None,
    base_model_variant: VariantFilter = None,
    query: Annotated[
        str | None,
        typer.Option(
            "--query",
            "-q",
            help="Only experts with this text in owner/name, task description or a tag "
            "(capitals aside).",
            show_default=False,
        ),
    ] = None,
    sort: Annotated[
        ExpertOrder,
        typer.Option(
            help="created: oldest first (the default); recent: latest revision newest first; "
            "name: owner/name A-Z."
        ),
    ] = ExpertOrder.created,
    limit: Annotated[int, typer.Option(help="How many at most.", min=1, max=MAX_LISTED)] = 20,
    offset: Annotated[int, typer.Option(help="Skip this many first (paging).", min=0)] = 0,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """List the hub's experts with their latest revision, oldest first unless --sort says."""
    with reported_errors(), open_client(endpoint, token) as client:
        page = client.list_experts(
            owner=owner,
            base_model=base_model,
            tag=tag,
            license=license,
            dataset=dataset,
            base_model_variant=base_model_variant,
            q=query,
            sort=sort,
            limit=limit,
            offset=offset,
        )
    shown = f"{page.offset + 1}-{page.offset + len(page.items)}" if page.items else "none"
    table = Table(
        "expert",
        "revisions",
        "base model",
        "type",
        "tags",
        "task",
        title=f"experts {shown} of {page.total}",
    )
    table.columns[0].no_wrap = True
    for item in page.items:
        latest = item.latest
        table.add_row(
            f"{item.id}@{latest.revision}",
            str(item.revision_count),
            latest.base_model or "unknown",
            latest.peft_type,
            ", ".join(latest.tags),
            latest.task_description,
        )
    table_console().print(table)
    if page.offset + len(page.items) < page.total:
        typer.echo(f"more: --offset {page.offset + len(page.items)}", err=True)


def codec_label(codec: str, value_bits: int) -> str:
    """How the CLI names a blob's codec: `dare, 4-bit levels`, or `compeft` for signs only."""
    return f"{codec}, {value_bits}-bit levels" if value_bits else codec


def info(expert: ExpertArgument, endpoint: Endpoint = None, token: Token = None) -> None:
    """Show what the hub records about a revision: task, base model, sizes, fidelity, blob."""
    with reported_errors(), open_client(endpoint, token) as client:
        revision = client.info(expert)
    fidelity = revision.fidelity
    lines = {
        "expert": f"{revision.id}@{revision.revision}",
        "created": format_utc(revision.created_at),
        "message": revision.message or "none",
        "task": revision.task_description,
        "base model": (revision.base_model or "unknown")
        + (f", trained on {revision.base_model_variant}" if revision.base_model_variant else ""),
        "type": revision.peft_type + ("" if revision.rank is None else f", rank {revision.rank}"),
        "tags": ", ".join(revision.tags) or "none",
        "license": revision.license or "not given",
        "datasets": ", ".join(revision.datasets) or "not given",
        "model card": (
            "none"
            if revision.model_card is None
            else f"README.md, {len(revision.model_card)} chars"
        ),
        "size": (
            f"{revision.blob_bytes} bytes ({revision.compression_ratio_fp16:.1f}x vs fp16, "
            f"{revision.compression_ratio:.1f}x vs the uploaded {revision.original_dtype} file, "
            f"{revision.bits_per_param:.2f} bits/param)"
        ),
        "compression": (
            f"{codec_label(revision.codec, revision.value_bits)}, density {revision.density:g}, "
            f"{revision.scope}, {revision.factorisation}, scale {revision.scale}"
        ),
        "fidelity": (
            "not measured"
            if fidelity is None
            else f"cosine {fidelity.cosine.mean:.2f}, relative error "
            f"{fidelity.relative_error.mean:.2f} (module means)"
        ),
        "blob sha256": revision.blob_sha256
        + (" (missing on the hub)" if revision.blob_missing else ""),
    }
    console = table_console()
    width = max(len(key) for key in lines)
    for key, value in lines.items():
        console.print(f"{key:>{width}}  {value}", soft_wrap=True)


def delete(
    expert: Annotated[
        str, typer.Argument(help="owner/name (every revision goes).", show_default=False)
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")] = False,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Delete an expert with all its revisions (its owner's token only); the name is free again."""
    if not yes:
        typer.confirm(f"Delete {expert} and every revision of it?", abort=True, err=True)
    with reported_errors(), open_client(endpoint, token) as client:
        client.delete(expert)
    typer.echo(f"deleted {expert}")
