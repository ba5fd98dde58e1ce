"""The client SDK: `HubClient` and the exceptions it raises.

- `hub.py`: HubClient (upload, list, info, search, pull, load, export, delete), with the token
  calls of `accounts.py` (whoami, create, list, revoke); `answers.py` checks requests and answers
  against the wire types.
- `http.py`: the httpx connection, timeouts and retries; `errors.py`: the exception families.
- `cache.py`: the sha256-keyed download cache; `transfer.py`: resumable verified downloads.
- `refs.py`: `owner/name[@revision]`; `settings.py`: the COMPEFT_HUB_* client variables.
- `composition.py`: retrieve, decompress and compose experts on a local base model (imports
  peft and transformers, so it is not imported here).

`HubClient` and `RetryPolicy` are imported on first use (PEP 562): the CLI's `--help` and its
error handling load only this package's errors and settings, not the decoder (numba) or tenacity.
"""

from typing import TYPE_CHECKING, Any

from registry.client.errors import (
    AuthError,
    BadRequestError,
    ChecksumMismatchError,
    ConflictError,
    ForbiddenError,
    HubError,
    LimitExceededError,
    NotCachedError,
    NotFoundError,
    RateLimitedError,
    ServerUnavailableError,
)
from registry.client.refs import ExpertRef
from registry.client.settings import ClientLimits

if TYPE_CHECKING:
    from registry.client.http import RetryPolicy
    from registry.client.hub import HubClient

__all__ = [
    "AuthError",
    "BadRequestError",
    "ChecksumMismatchError",
    "ClientLimits",
    "ConflictError",
    "ExpertRef",
    "ForbiddenError",
    "HubClient",
    "HubError",
    "LimitExceededError",
    "NotCachedError",
    "NotFoundError",
    "RateLimitedError",
    "RetryPolicy",
    "ServerUnavailableError",
]


def __getattr__(name: str) -> Any:
    """`HubClient` and `RetryPolicy`, imported when first asked for."""
    if name == "HubClient":
        from registry.client.hub import HubClient

        return HubClient
    if name == "RetryPolicy":
        from registry.client.http import RetryPolicy

        return RetryPolicy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
