"""`HubClient`: upload, find, download and decompress experts of a compeft-hub registry.

Answers are parsed into the wire models the server answers with (`registry.wire`), so client and
server cannot disagree silently about a field. The client needs neither torch nor the server's
stack: `load` and `export_peft` import torch when called (the `torch` extra), and
`load_expert(...).decompress_numpy()` decodes with numpy alone.
Downloads go through the verified cache (cache.py, transfer.py); a revision is always resolved to
its number and blob sha256 first, so the bytes fetched are those of one immutable revision even
while `latest` moves.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import httpx
from tqdm.auto import tqdm

from compeft_core.expert import CompressedExpert
from registry.client.accounts import AccountCalls
from registry.client.answers import API, parsed, request_body
from registry.client.cache import BlobCache
from registry.client.errors import BadRequestError, LimitExceededError, NotCachedError
from registry.client.http import DEFAULT_RETRY, DEFAULT_TIMEOUT, HubHttp, RetryPolicy
from registry.client.refs import ExpertRef, expert_path
from registry.client.settings import ClientLimits, ClientSettings, hub_endpoint
from registry.client.transfer import download_blob
from registry.client.uploads import UploadCalls
from registry.wire.experts import MODEL_CARD_NAME, ExpertOrder, ExpertPage, RevisionDetail
from registry.wire.search import BaseModelList, SearchRequest, SearchResponse, SearchResult

if TYPE_CHECKING:
    import numpy as np
    import torch


def _torch_float32() -> torch.dtype:
    """torch's float32, or an error that says how to install torch (an optional extra)."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            "decompressing to torch tensors needs torch: pip install "
            "'compeft-hub[torch]' (or decode with load_expert(...)"
            ".decompress_numpy())"
        ) from exc
    return torch.float32


def _revision_path(ref: ExpertRef) -> str:
    return f"{expert_path(ref)}/revisions/{ref.revision}"


class HubClient(UploadCalls, AccountCalls):
    """A connection to one hub and one local cache. Use it as a context manager, or `close()`.

    Every argument left as None comes from the environment (settings.py): COMPEFT_HUB_ENDPOINT,
    COMPEFT_HUB_TOKEN, COMPEFT_HUB_CACHE (default ~/.cache/compeft-hub), COMPEFT_HUB_OFFLINE.
    Progress bars show on a terminal unless COMPEFT_HUB_DISABLE_PROGRESS_BARS=1; `tqdm_class`
    swaps the bar (e.g. a notebook or logging one). Experts are named `owner/name[@revision]`,
    the revision a number or `latest` (the default). `limits` bound what the hub may make the
    client read or allocate (default: ClientLimits from the COMPEFT_HUB_MAX_* variables).
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        cache_dir: str | Path | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy = DEFAULT_RETRY,
        progress: bool | None = None,
        tqdm_class: type[tqdm] = tqdm,
        offline: bool | None = None,
        limits: ClientLimits | None = None,
    ) -> None:
        settings = ClientSettings()
        self.limits = limits if limits is not None else ClientLimits()
        self.endpoint = (
            hub_endpoint(settings.endpoint, source="COMPEFT_HUB_ENDPOINT")
            if url is None
            else hub_endpoint(url, source="the hub URL")
        )
        self.cache = BlobCache(Path(cache_dir) if cache_dir is not None else settings.cache)
        self.offline = settings.offline if offline is None else offline
        self.progress = (
            not settings.disable_progress_bars and sys.stderr.isatty()
            if progress is None
            else progress
        )
        self.tqdm_class = tqdm_class
        self._http = HubHttp(
            self.endpoint,
            token=token or settings.token,
            timeout=timeout,
            retry=retry,
            limits=self.limits,
        )

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- writes (and `upload`, from UploadCalls) -----------------------------------------

    def delete(self, expert: str) -> None:
        """Soft-delete `owner/name` with all its revisions (owner only); the name is free again."""
        if "@" in expert:
            raise BadRequestError(f"{expert!r}: delete removes the whole expert; give owner/name")
        self._http.request("DELETE", expert_path(ExpertRef.parse(expert)))

    # --- reads --------------------------------------------------------------------------------

    def list_experts(
        self,
        *,
        owner: str | None = None,
        base_model: str | None = None,
        peft_type: str | None = None,
        tag: str | None = None,
        license: str | None = None,
        dataset: str | None = None,
        base_model_variant: str | None = None,
        q: str | None = None,
        sort: ExpertOrder | str = ExpertOrder.created,
        limit: int = 20,
        offset: int = 0,
    ) -> ExpertPage:
        """One page of live experts in `sort` order (`created`: oldest first, `recent`: latest
        revision newest first, `name`: owner/name A-Z); filters and `q` (text in owner/name, task
        description or a tag, capitals aside) apply to each latest revision."""
        filters: dict[str, Any] = {
            "owner": owner,
            "base_model": base_model,
            "peft_type": peft_type,
            "tag": tag,
            "license": license,
            "dataset": dataset,
            "base_model_variant": base_model_variant,
            "q": q,
            "sort": str(sort),  # a bad one: the hub's 422 names the choices
        }
        params = {key: value for key, value in filters.items() if value is not None}
        response = self._http.request(
            "GET", f"{API}/experts", params={**params, "limit": limit, "offset": offset}
        )
        return parsed(ExpertPage, response)

    def search(
        self,
        query: str | None = None,
        examples: Iterable[str] = (),
        *,
        base_model: str,
        k: int = 10,
        peft_type: str | None = None,
        tags: Iterable[str] = (),
        exclude: Iterable[str] = (),
        license: str | None = None,
        dataset: str | None = None,
        base_model_variant: str | None = None,
    ) -> list[SearchResult]:
        """The k experts of `base_model` whose task is closest to `query` and/or `examples`
        (inputs of the task), best first, each with its latest revision.

        NotFoundError when no expert has that base model. The request is checked here first,
        so an empty query or too many examples fail before anything is sent.
        """
        request = request_body(
            SearchRequest,
            "search",
            query=query,
            examples=list(examples),
            base_model=base_model,
            k=k,
            peft_type=peft_type,
            tags=list(tags),
            exclude=list(exclude),
            license=license,
            dataset=dataset,
            base_model_variant=base_model_variant,
        )
        response = self._http.request(
            "POST", f"{API}/search", json=request.model_dump(mode="json", exclude_none=True)
        )
        return parsed(SearchResponse, response).results

    def base_models(self) -> list[str]:
        """The base models the hub has experts of, sorted: what `search` can be asked for."""
        return parsed(BaseModelList, self._http.request("GET", f"{API}/base-models")).base_models

    def info(self, expert: str) -> RevisionDetail:
        """Everything the hub records about a revision, adapter config and blob sha256 included.

        Offline, the answer is the one cached when the reference was last resolved online.
        """
        return self._resolve(ExpertRef.parse(expert))

    def _resolve(self, ref: ExpertRef) -> RevisionDetail:
        if self.offline:
            cached = self.cache.read_ref(ref)
            if cached is None:
                raise NotCachedError(
                    f"{ref} is not in the cache at {self.cache.root}; resolve it "
                    "once online (COMPEFT_HUB_OFFLINE unset)"
                )
            return cached
        revision = parsed(RevisionDetail, self._http.request("GET", _revision_path(ref)))
        self.cache.write_ref(ref, revision)
        return revision

    # --- blobs --------------------------------------------------------------------------------

    def pull(self, expert: str) -> Path:
        """The local path of the revision's blob, verified; downloaded only when not cached."""
        ref = ExpertRef.parse(expert)
        return self._blob_file(ref, self._resolve(ref))

    def _blob_file(self, ref: ExpertRef, revision: RevisionDetail) -> Path:
        cached = self.cache.verified_blob(revision.blob_sha256)
        if cached is not None:
            return cached
        if self.offline:
            raise NotCachedError(f"the blob of {ref} is not in the cache at {self.cache.root}")
        pinned = ref.at(revision.revision)
        with self.tqdm_class(
            total=revision.blob_bytes,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=str(pinned),
            disable=not self.progress,
        ) as progress:
            return download_blob(
                self._http,
                self.cache,
                f"{_revision_path(pinned)}/blob",
                sha256=revision.blob_sha256,
                size=revision.blob_bytes,
                progress=progress,
            )

    def fetch(
        self, expert: str, *, dtype: torch.dtype | np.dtype | None = None
    ) -> tuple[RevisionDetail, CompressedExpert]:
        """A revision and its compressed expert, resolved once (so `latest` cannot move between
        the two); the bytes parsed are bytes whose sha256 matched.

        With `dtype`, the expert is to be decompressed to it: LimitExceededError unless its dense
        tensors fit `limits.max_decompressed_bytes`, by the revision's metadata before the
        download and by the blob's own declaration before anything dense is allocated.
        """
        ref = ExpertRef.parse(expert)
        revision = self._resolve(ref)
        if dtype is not None:
            self._check_decompressed_size(revision, revision.num_params, dtype)
        data = self.cache.read_verified(revision.blob_sha256)
        if data is None:
            data = self._blob_file(ref, revision).read_bytes()  # verified while downloading
        compressed = CompressedExpert.from_bytes(data)
        if dtype is not None:
            self._check_decompressed_size(revision, compressed.num_params, dtype)
        return revision, compressed

    def _check_decompressed_size(
        self, revision: RevisionDetail, params: int, dtype: torch.dtype | np.dtype
    ) -> None:
        needed, limit = params * dtype.itemsize, self.limits.max_decompressed_bytes
        if needed > limit:
            raise LimitExceededError(
                f"{revision.id}@{revision.revision} declares {params} parameters: {needed} bytes "
                f"as {dtype}, over the client's limit of {limit} bytes "
                "(COMPEFT_HUB_MAX_DECOMPRESSED_BYTES)"
            )

    def load_expert(self, expert: str) -> CompressedExpert:
        """The compressed expert, to decompress later with any alpha and dtype (unbounded by
        `limits`, unlike `load` and `export_peft`: check `num_params` first)."""
        return self.fetch(expert)[1]

    def load(
        self, expert: str, alpha: float | None = None, dtype: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]:
        """The decompressed adapter state dict (float32 unless `dtype` says otherwise), keys as
        peft saves them. Needs torch.

        A tensor decodes to alpha * sigma * sign on its kept entries; `alpha=None` uses the
        default alpha stored per tensor at upload.
        """
        dtype = dtype if dtype is not None else _torch_float32()
        from compeft_core.task_vectors import adapter_from_task_vector

        revision, compressed = self.fetch(expert, dtype=dtype)
        return adapter_from_task_vector(
            revision.peft_type, compressed.decompress(alpha=alpha, dtype=dtype)
        )

    def export_peft(
        self,
        expert: str,
        path: str | Path,
        alpha: float | None = None,
        dtype: torch.dtype | None = None,
    ) -> Path:
        """Write the decompressed adapter (float32 unless `dtype` says otherwise) as a folder
        `peft.PeftModel.from_pretrained` loads, with the model card (README.md) uploaded with
        it. Needs torch."""
        dtype = dtype if dtype is not None else _torch_float32()
        from compeft_core.export import export_adapter

        revision, compressed = self.fetch(expert, dtype=dtype)
        folder = export_adapter(
            compressed, revision.exported_config(), Path(path), alpha=alpha, dtype=dtype
        )
        if revision.model_card is not None:
            (folder / MODEL_CARD_NAME).write_text(revision.model_card, encoding="utf-8")
        return folder
