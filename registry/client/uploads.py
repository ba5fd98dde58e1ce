"""`HubClient.upload`: a PEFT folder, with its model card when it has one, as the next revision."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path

import httpx

from compeft_core import AdapterFormatError
from compeft_core.formats import CONFIG_NAME, PICKLE_NAME, PICKLE_REFUSED, WEIGHTS_NAME
from registry.client.answers import parsed, request_body
from registry.client.errors import BadRequestError
from registry.client.http import HubHttp
from registry.client.refs import ExpertRef, expert_path
from registry.wire.experts import (
    CONFIG_PART,
    METADATA_PART,
    MODEL_CARD_NAME,
    MODEL_CARD_PART,
    WEIGHTS_PART,
    RevisionCreated,
    UploadMetadata,
)


class UploadCalls:
    """Mixed into HubClient, whose connection (`_http`) carries the uploader's token."""

    _http: HubHttp

    def upload(
        self,
        folder: str | Path,
        expert: str,
        *,
        description: str,
        samples: Iterable[str] = (),
        tags: Iterable[str] = (),
        density: float | None = None,
        scope: str | None = None,
        alpha: float | None = None,
        parent_revision: int | None = None,
        factorisation: str | None = None,
        scale: str | None = None,
        codec: str | None = None,
        value_bits: int | None = None,
        message: str | None = None,
        base_model: str | None = None,
        base_model_variant: str | None = None,
        license: str | None = None,
        datasets: Iterable[str] | None = None,
    ) -> RevisionCreated:
        """Upload a PEFT folder (adapter_config.json + adapter_model.safetensors, and README.md,
        its model card, if there is one) as the next revision of `owner/name`; the hub compresses
        it. Creates the expert on first upload.

        The metadata is checked here first, so a typo fails before any byte is sent. Only a failed
        connect or 502/503/504 is retried: anything else may have created the revision already.
        `parent_revision` makes the upload fail with ConflictError unless it is the expert's
        latest revision (0: the expert must not exist yet). `density`, `scope`, `factorisation`,
        `scale`, `codec` (compeft, bitdelta, dare, deltadq: docs/blob-format.md) and
        `value_bits` left as None take the hub's defaults (`compeft_core.compress` explains them).
        `base_model` names the base model's hub id where the adapter config records a local path
        (the answer's `warnings` say when it looks like one); `base_model_variant` says which
        copy of it the expert was trained on (full-precision, nf4, ...). `license` and `datasets` left as
        None take the model card's front matter. `message` says what the revision changes.
        Uploading what the latest revision holds again makes no revision: the answer is that one,
        with `created` false.
        """
        if "@" in expert:
            raise BadRequestError(
                f"upload to {expert!r}: give owner/name; the hub numbers revisions itself"
            )
        ref = ExpertRef.parse(expert)
        folder = Path(folder)
        config, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        if not weights.is_file() and (folder / PICKLE_NAME).is_file():
            raise AdapterFormatError(PICKLE_REFUSED)
        for path in (config, weights):
            if not path.is_file():
                raise AdapterFormatError(f"{folder} is not a PEFT adapter folder: no {path.name}")
        card = folder / MODEL_CARD_NAME
        metadata = request_body(
            UploadMetadata,
            "metadata",
            task_description=description,
            sample_inputs=list(samples),
            tags=list(tags),
            density=density,
            scope=scope,
            alpha=alpha,
            parent_revision=parent_revision,
            factorisation=factorisation,
            scale=scale,
            codec=codec,
            value_bits=value_bits,
            message=message,
            base_model=base_model,
            base_model_variant=base_model_variant,
            license=license,
            datasets=None if datasets is None else list(datasets),
        )

        def send() -> httpx.Response:
            with ExitStack() as files:
                parts = {
                    CONFIG_PART: (
                        CONFIG_NAME,
                        files.enter_context(config.open("rb")),
                        "application/json",
                    ),
                    WEIGHTS_PART: (
                        WEIGHTS_NAME,
                        files.enter_context(weights.open("rb")),
                        "application/octet-stream",
                    ),
                }
                if card.is_file():
                    parts[MODEL_CARD_PART] = (
                        MODEL_CARD_NAME,
                        files.enter_context(card.open("rb")),
                        "text/markdown",
                    )
                return self._http.send(
                    "POST",
                    f"{expert_path(ref)}/revisions",
                    files=parts,
                    data={METADATA_PART: metadata.model_dump_json(exclude_none=True)},
                )

        return parsed(RevisionCreated, self._http.call(send, idempotent=False))
