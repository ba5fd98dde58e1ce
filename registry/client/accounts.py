"""The account calls of `HubClient`: who am I, and the user's API tokens."""

from __future__ import annotations

from urllib.parse import quote

from registry.client.answers import API, parsed, request_body
from registry.client.http import HubHttp
from registry.wire.accounts import TokenCreated, TokenInfo, TokenList, TokenRequest, Whoami


class AccountCalls:
    """Mixed into HubClient, whose connection (`_http`) carries the token these calls are about."""

    _http: HubHttp

    def whoami(self) -> Whoami:
        """The user of this client's token and the token itself (read-only? expires when?).

        AuthError without a token, or when it is unknown, revoked or expired (the detail says
        which).
        """
        return parsed(Whoami, self._http.request("GET", f"{API}/whoami"))

    def list_tokens(self) -> list[TokenInfo]:
        """Every token of this client's user, oldest first: lookup ids and dates, no secrets."""
        return parsed(TokenList, self._http.request("GET", f"{API}/tokens")).tokens

    def create_token(
        self,
        *,
        read_only: bool | None = None,
        expires_in_days: int | None = None,
        name: str | None = None,
    ) -> TokenCreated:
        """A new token of this client's user; `.token` is shown only in this answer.

        It has this client's token's rights or fewer: unset options are inherited, and asking a
        read-only or expiring token for more raises ForbiddenError. Not retried: a lost answer
        may have created a token (revoke it by lookup id from `list_tokens`).
        """
        request = request_body(
            TokenRequest, "token", read_only=read_only, expires_in_days=expires_in_days, name=name
        )
        response = self._http.call(
            lambda: self._http.send(
                "POST", f"{API}/tokens", json=request.model_dump(exclude_none=True)
            ),
            idempotent=False,
        )
        return parsed(TokenCreated, response)

    def revoke_token(self, lookup_id: str) -> None:
        """Revoke one of this user's tokens by lookup id, for good; revoking again is a no-op.

        A read-only token may revoke only itself; another user's token is NotFoundError.
        """
        self._http.request("DELETE", f"{API}/tokens/{quote(lookup_id, safe='')}")
