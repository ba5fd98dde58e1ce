"""What the client commands share: their common options and how they report errors.

Nothing here imports the client's dependencies at import time, so `compeft-hub --help` stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from registry.client.settings import DEFAULT_ENDPOINT

if TYPE_CHECKING:
    from registry.client import HubClient

Endpoint = Annotated[
    str | None,
    typer.Option(
        "--endpoint",
        help=f"Hub URL (env COMPEFT_HUB_ENDPOINT; default {DEFAULT_ENDPOINT}).",
        show_default=False,
    ),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="API token (env COMPEFT_HUB_TOKEN). Uploads and whoami need one; reads do not.",
        show_default=False,
    ),
]
ExpertArgument = Annotated[
    str,
    typer.Argument(
        help="owner/name, optionally @REVISION (a number; default: latest).", show_default=False
    ),
]
Alpha = Annotated[
    float | None,
    typer.Option(
        help="ComPEFT alpha for every tensor (default: the alphas stored at upload).",
        show_default=False,
    ),
]
LicenseFilter = Annotated[
    str | None,
    typer.Option(
        "--license", help="Only experts under this license id, e.g. mit.", show_default=False
    ),
]
DatasetFilter = Annotated[
    str | None,
    typer.Option(
        "--dataset", help="Only experts trained on this data set (its hub id).", show_default=False
    ),
]
VariantFilter = Annotated[
    str | None,
    typer.Option(
        "--base-model-variant",
        help="Only experts trained on this variant of the base model: full-precision, or its "
        "quantisation (e.g. nf4, rtn-4bit-g128).",
        show_default=False,
    ),
]

Force = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Write into the folder even when it holds files (same-named ones are overwritten).",
    ),
]


def output_folder(folder: Path, force: bool) -> Path:
    """`folder`, checked before any work: a file, or a folder with files in it unless `force`,
    raises ValueError, so an export never overwrites someone's adapter unasked."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file; give a folder to write the adapter into")
    if not force and folder.is_dir() and any(folder.iterdir()):
        raise ValueError(
            f"{folder} is not empty; pass --force to write into it anyway "
            "(files of the same name are overwritten)"
        )
    return folder


@contextmanager
def reported_errors() -> Iterator[None]:
    """Hub errors, bad inputs and unreadable files: one line on stderr, exit status 1."""
    from registry.client.errors import HubError

    try:
        yield
    except (HubError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def open_client(endpoint: str | None, token: str | None) -> HubClient:
    """Imported here, when a command runs: `--help` does not load the client's dependencies."""
    from registry.client import HubClient

    return HubClient(url=endpoint, token=token)


def table_console() -> Console:
    """Stdout for tables; without markup, since descriptions come from strangers."""
    return Console(markup=False)
