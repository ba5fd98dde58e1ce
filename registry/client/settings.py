"""The client's environment variables, named like huggingface_hub's so users know them.

COMPEFT_HUB_ENDPOINT, COMPEFT_HUB_TOKEN, COMPEFT_HUB_CACHE, COMPEFT_HUB_OFFLINE and
COMPEFT_HUB_DISABLE_PROGRESS_BARS. The server's Settings ignore these (and this class ignores the
server's), so one shell can hold both.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_ENDPOINT = "http://127.0.0.1:8000"  # where `compeft-hub serve` listens by default
DEFAULT_CACHE = Path("~/.cache/compeft-hub")


class ClientSettings(BaseSettings):
    """Read once per HubClient; explicit constructor arguments win over these."""

    model_config = SettingsConfigDict(env_prefix="COMPEFT_HUB_", extra="ignore")

    endpoint: str = Field(default=DEFAULT_ENDPOINT, description="Base URL of the hub.")
    token: str | None = Field(default=None, description="Sent as `Authorization: Bearer ...`.")
    cache: Path = Field(default=DEFAULT_CACHE, description="Root of the download cache.")
    offline: bool = Field(default=False, description="Answer from the cache only, never call.")
    disable_progress_bars: bool = False
