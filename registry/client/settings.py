"""The client's environment variables, named like huggingface_hub's so users know them, and the
limits on what the client accepts from a hub.

COMPEFT_HUB_ENDPOINT, COMPEFT_HUB_TOKEN, COMPEFT_HUB_CACHE, COMPEFT_HUB_OFFLINE,
COMPEFT_HUB_DISABLE_PROGRESS_BARS and the COMPEFT_HUB_MAX_* limits. The server's Settings ignore
these (and these classes ignore the server's), so one shell can hold both.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_ENDPOINT = "http://127.0.0.1:8000"  # where `compeft-hub serve` listens by default
DEFAULT_CACHE = Path("~/.cache/compeft-hub")
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
# The part of an error answer read for its message; not a setting, no detail needs more.
MAX_ERROR_BODY_BYTES = 64 * KiB
_ENVIRONMENT = SettingsConfigDict(env_prefix="COMPEFT_HUB_", extra="ignore")


class ClientSettings(BaseSettings):
    """Read once per HubClient; explicit constructor arguments win over these."""

    model_config = _ENVIRONMENT

    endpoint: str = Field(default=DEFAULT_ENDPOINT, description="Base URL of the hub.")
    token: str | None = Field(default=None, description="Sent as `Authorization: Bearer ...`.")
    cache: Path = Field(default=DEFAULT_CACHE, description="Root of the download cache.")
    offline: bool = Field(default=False, description="Answer from the cache only, never call.")
    disable_progress_bars: bool = False


API_PREFIX = "/api/v1"  # every API path starts with it


def hub_endpoint(url: str, *, source: str) -> str:
    """The hub's root URL from what a user gave (`source` names where): ValueError, saying
    what to give, for an empty or non-HTTP one; a trailing `/api/v1` (the API's own prefix,
    which the client adds) and trailing slashes are dropped."""
    text = url.strip()
    if not text:
        raise ValueError(
            f"{source} is empty: give the hub's URL (like {DEFAULT_ENDPOINT}), or unset it "
            "for that default"
        )
    try:
        parsed = urlsplit(text)
        parsed.port  # noqa: B018 (parses the port: ValueError for one out of range)
    except ValueError as exc:
        raise ValueError(f"{source} {text!r} is not a URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(
            f"{source} {text!r} is not an http(s) URL: give one like {DEFAULT_ENDPOINT}"
        )
    return text.rstrip("/").removesuffix(API_PREFIX).rstrip("/")


class ClientLimits(BaseSettings):
    """How much the client takes from a hub, which it treats as hostile (COMPEFT_HUB_MAX_*).

    Each is enforced before the bytes are read or the memory allocated, never after. Raise one
    with its variable or `HubClient(limits=ClientLimits(...))` when a legitimate expert needs it.
    """

    model_config = _ENVIRONMENT

    max_blob_bytes: int = Field(
        default=4 * GiB,
        gt=0,
        description="Largest blob downloaded; a revision announcing a larger one is refused.",
    )
    max_answer_bytes: int = Field(
        default=16 * MiB, gt=0, description="Largest JSON answer read (metadata, lists, search)."
    )
    max_decompressed_bytes: int = Field(
        default=8 * GiB,
        gt=0,
        description="Largest dense state dict decompressed: parameters x output dtype size.",
    )
