"""The client SDK: `HubClient` and the exceptions it raises.

- `hub.py`: HubClient (upload, list, info, search, pull, load, export, delete).
- `http.py`: the httpx connection, timeouts and retries; `errors.py`: the exception families.
- `cache.py`: the sha256-keyed download cache; `transfer.py`: resumable verified downloads.
- `refs.py`: `owner/name[@revision]`; `settings.py`: the COMPEFT_HUB_* client variables.
- `composition.py`: retrieve, decompress and compose experts on a local base model (imports
  peft and transformers, so it is not imported here).
"""

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
from registry.client.http import RetryPolicy
from registry.client.hub import HubClient
from registry.client.refs import ExpertRef
from registry.client.settings import ClientLimits

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
