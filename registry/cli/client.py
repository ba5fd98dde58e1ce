"""The client half of `compeft-hub`: upload, pull, export, search, merge and compose experts;
whoami.

Each command is a thin shell over `registry.client`: it builds a HubClient from the options (or
COMPEFT_HUB_ENDPOINT / COMPEFT_HUB_TOKEN / COMPEFT_HUB_CACHE), calls it, and prints. Results go to
stdout, progress bars and errors to stderr; an error a person can fix prints one line and exits 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from registry.cli.extras import needs_extra
from registry.client.settings import DEFAULT_ENDPOINT
from registry.wire.accounts import format_utc
from retrieval.limits import MAX_QUERY_EXAMPLES

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
        "--token", help="API token, needed to upload (env COMPEFT_HUB_TOKEN).", show_default=False
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


@contextmanager
def _reported_errors() -> Iterator[None]:
    """Hub errors, bad inputs and unreadable files: one line on stderr, exit status 1."""
    from registry.client.errors import HubError

    try:
        yield
    except (HubError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def _client(endpoint: str | None, token: str | None) -> HubClient:
    """Imported here, when a command runs: `--help` does not load the client's dependencies."""
    from registry.client import HubClient

    return HubClient(url=endpoint, token=token)


def _console() -> Console:
    """Stdout for tables; without markup, since descriptions come from strangers."""
    return Console(markup=False)


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
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Upload a PEFT adapter as the next revision of owner/name; the hub compresses it."""
    with _reported_errors(), _client(endpoint, token) as client:
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
        )
    fidelity = created.fidelity
    typer.echo(
        f"{created.id}@{created.revision}: {created.original_bytes} -> "
        f"{created.blob_bytes} bytes ({created.compression_ratio:.1f}x, "
        f"{created.bits_per_param:.2f} bits/param, density {created.density:g}, "
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
    with _reported_errors(), _client(endpoint, token) as client:
        typer.echo(client.pull(expert))


@needs_extra("torch")
def export(
    expert: ExpertArgument,
    out: Annotated[
        Path, typer.Argument(help="Folder to write (created if missing).", show_default=False)
    ],
    alpha: Alpha = None,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Decompress an expert into a PEFT folder that peft.PeftModel.from_pretrained loads."""
    with _reported_errors(), _client(endpoint, token) as client:
        typer.echo(client.export_peft(expert, out, alpha=alpha))


def search(
    base_model: Annotated[
        str,
        typer.Option(help="Base model id, as the adapters' configs name it.", show_default=False),
    ],
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
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Find the experts of a base model that fit a task, best first."""
    with _reported_errors(), _client(endpoint, token) as client:
        hits = client.search(
            query, example or (), base_model=base_model, k=k, peft_type=peft_type, tags=tag or ()
        )
    table = Table("#", "expert", "score", "type", "tags", "task", title=f"experts for {base_model}")
    table.columns[1].no_wrap = True
    for hit in hits:
        revision = hit.revision
        table.add_row(
            str(hit.rank),
            f"{hit.id}@{revision.revision}",
            f"{hit.score:.3f}",
            revision.peft_type,
            ", ".join(revision.tags),
            revision.task_description,
        )
    _console().print(table)


@needs_extra("compose")
def merge(
    experts: Annotated[
        list[str],
        typer.Argument(
            help="Experts to merge, owner/name or owner/name@REVISION (same ranks and modules).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="Folder to write the merged PEFT adapter to.", show_default=False)
    ],
    weights: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated weight per expert, e.g. 0.5,0.5 (default: 1/N each).",
            show_default=False,
        ),
    ] = None,
    method: Annotated[
        Literal["ties", "task_arithmetic"],
        typer.Option(help="ties: trim, elect sign, disjoint mean; task_arithmetic: weighted sum."),
    ] = "ties",
    density: Annotated[
        float,
        typer.Option(
            help="TIES: fraction of each expert's largest entries kept before the sign vote."
        ),
    ] = 0.2,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Merge experts with fixed weights (A's with A's, B's with B's) into one PEFT adapter."""
    from compeft_core.merge import merge_lora_experts
    from registry.client.composition import load_lora_experts

    with _reported_errors(), _client(endpoint, token) as client:
        factors = _weights(weights, len(experts))
        loaded = load_lora_experts(client, experts)
        merged = merge_lora_experts(loaded, factors, method=method, density=density)
        typer.echo(merged.save(out))


def _weights(text: str | None, count: int) -> list[float]:
    if text is None:
        return [1.0 / count] * count
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError as exc:
        raise ValueError(f"--weights {text!r}: give comma-separated numbers") from exc
    if len(values) != count:
        raise ValueError(f"--weights has {len(values)} numbers for {count} experts")
    return values


@needs_extra("compose")
def compose(
    examples: Annotated[
        Path,
        typer.Option(
            help='Few-shot examples, JSON lines: {"input": "...", "output": "..."}.',
            exists=True,
            dir_okay=False,
            show_default=False,
        ),
    ],
    base_model: Annotated[
        str,
        typer.Option(
            help="Base model id the experts were trained on, as the hub records it (search filter).",
            show_default=False,
        ),
    ],
    model: Annotated[
        Path,
        typer.Option(
            help="That base model on disk: a transformers folder or a .gguf file.",
            exists=True,
            show_default=False,
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="Folder to write the composed PEFT adapter to.", show_default=False)
    ],
    query: Annotated[
        str | None,
        typer.Option(
            help="The task in words, for retrieval (the example inputs are sent too).",
            show_default=False,
        ),
    ] = None,
    expert: Annotated[
        list[str] | None,
        typer.Option(
            help="Compose this expert (owner/name or owner/name@REVISION; repeatable) instead of "
            "searching.",
            show_default=False,
        ),
    ] = None,
    k: Annotated[
        int, typer.Option("-k", "--top-k", help="How many experts to retrieve.", min=1)
    ] = 20,
    steps: Annotated[
        int, typer.Option(help="Optimizer budget: one few-shot forward pass each.", min=1)
    ] = 40,
    mode: Annotated[
        Literal["lorahub", "cat"],
        typer.Option(
            help="lorahub: A's and B's weighted separately (same ranks and modules); "
            "cat: exactly sum of w_i B_i A_i (any ranks)."
        ),
    ] = "lorahub",
    optimizer: Annotated[str, typer.Option(help="Any nevergrad optimizer name.")] = "NGOpt",
    seed: Annotated[int, typer.Option(help="Seed of the optimizer.")] = 42,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Compose experts for a new task from a few examples (LoraHub) and write a PEFT folder.

    Retrieves the k experts closest to the task (or takes --expert) and decompresses them.
    Searches one weight per expert in [-1.5, 1.5] minimizing few-shot loss + 0.05 mean |w|.
    Writes the adapter and composition.json (weights, losses, nevergrad's chosen optimizer).
    """
    from compeft_core.fewshot import FewShotLoss
    from registry.client.composition import (
        Shots,
        compose_from_hub,
        load_base_model,
        save_composition,
    )

    with _reported_errors(), _client(endpoint, token) as client:
        shots = Shots.read_jsonl(examples)
        if expert:
            chosen, scores = list(expert), {}
        else:
            hits = client.search(
                query=query,
                examples=shots.inputs[:MAX_QUERY_EXAMPLES],
                base_model=base_model,
                k=k,
                peft_type="LORA",
            )
            if not hits:
                raise ValueError(f"no LoRA expert for base model {base_model!r} on the hub")
            chosen = [f"{hit.id}@{hit.revision.revision}" for hit in hits]
            scores = {name: hit.score for name, hit in zip(chosen, hits, strict=True)}
        local = load_base_model(model)
        loss = FewShotLoss.from_text(
            local.tokenizer, shots.inputs, shots.outputs, seq2seq=local.seq2seq
        )
        with client.tqdm_class(
            total=steps, desc="composing", unit="step", disable=not client.progress
        ) as progress:

            def on_step(step: int, budget: int, step_loss: float) -> None:
                progress.update(1)
                progress.set_postfix(loss=f"{step_loss:.4f}")

            result = compose_from_hub(
                client,
                chosen,
                local.model,
                loss,
                mode=mode,
                budget=steps,
                optimizer=optimizer,
                seed=seed,
                on_step=on_step,
            )
        save_composition(
            result, out, query=query, base_model=base_model, model=str(model), scores=scores
        )
    table = Table("expert", "score", "weight", title=f"{mode} composition")
    for name, weight in result.weights.items():
        score = scores.get(name)
        table.add_row(name, "" if score is None else f"{score:.3f}", f"{weight:+.4f}")
    console = _console()
    console.print(table)
    trace = result.search
    console.print(
        f"optimizer: {trace.optimizer_requested} chose {trace.optimizer_chosen} "
        f"(nevergrad {trace.nevergrad_version}), {trace.budget} steps, seed {trace.seed}"
    )
    console.print(
        f"few-shot loss: {result.loss_before:.4f} (base model) -> {result.loss_after:.4f}"
    )
    console.print(f"wrote {out}")


def whoami(endpoint: Endpoint = None, token: Token = None) -> None:
    """Print the user the token belongs to, then the token: lookup id, access, expiry.

    Fails (exit 1) with the hub's reason when the token is unknown, revoked or expired.
    """
    with _reported_errors(), _client(endpoint, token) as client:
        me = client.whoami()
    info = me.token
    access = "read-only" if info.read_only else "read-write"
    expiry = "no expiry" if info.expires_at is None else f"expires {format_utc(info.expires_at)}"
    label = "" if info.name is None else f" {info.name!r}"
    typer.echo(me.user)
    typer.echo(f"token {info.lookup_id}{label}: {access}, {expiry}")


def register(app: typer.Typer) -> None:
    """Add the client commands to the `compeft-hub` app."""
    for command in (upload, pull, export, search, merge, compose, whoami):
        app.command()(command)
