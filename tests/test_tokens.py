"""Token lifecycle: whoami, list, create, revoke, expiry; over HTTP, the SDK and the CLI.

- A revoked or expired token answers 401 with a message that says which, when, and what to do;
  only a caller whose secret matched learns it (a wrong secret stays "invalid token").
- Listing shows a user's tokens (revoked and expired ones too) and never a secret, salt or hash.
- A token can revoke its own user's tokens (a read-only one only itself); another user's token
  is "not found". Revoking twice succeeds and keeps the first time (DELETE is retried).
- A token creates tokens with its own rights or fewer: never read-write from read-only, never
  outliving its own expiry; unset options are inherited.
- Downgrading the schema deletes the tokens older code could not refuse.
- `compeft-hub token create|list|revoke` with a token and no user name act on the caller's own
  tokens over HTTP (`hub: URL` on stderr); with a user name, or revoke without a token, on the
  database as the operator (`database: URL`); both print the same lines.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from alembic import command
from sqlalchemy import select
from typer.testing import CliRunner, Result

from bench.adapter_files import lora_adapter
from registry.cli.main import app as cli_app
from registry.client import AuthError, ForbiddenError, HubClient, NotFoundError
from registry.db.engine import create_db_engine
from registry.db.models import ApiToken, utc_now
from registry.db.schema import alembic_config, upgrade_schema
from registry.services.accounts import create_token
from registry.wire.accounts import TokenInfo
from tests.fixtures.live_hub import LiveHub, RunCli
from tests.fixtures.registry import Hub, auth
from tests.test_hardening_access import secret_of

TOKEN_FIELDS = set(TokenInfo.model_fields)
WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"  # a time as messages and the CLI show it
REVOKED = re.compile(
    rf"this token was revoked on {WHEN}; "
    r"create a new one with `compeft-hub token create`"
)


@pytest.fixture
def blob_store_url(tmp_path: Path) -> str:
    """Tokens never touch blobs: the local folder is enough."""
    return (tmp_path / "blobs").as_uri()


def lookup_id_of(token: str) -> str:
    return token.split("_")[1]


def token_expiring_at(hub: Hub, expires_at: datetime) -> str:
    """A new token of alice, expiring at `expires_at` (which may be past)."""
    hub.token("alice")  # creates alice on first use
    with hub.sessions() as session:
        return create_token(session, user_name="alice", expires_at=expires_at)


def whoami(hub: Hub, token: str | None) -> httpx.Response:
    return hub.client.get("/api/v1/whoami", headers=auth(token))


def revoke(hub: Hub, lookup_id: str, token: str) -> httpx.Response:
    return hub.client.delete(f"/api/v1/tokens/{lookup_id}", headers=auth(token))


def create(hub: Hub, token: str, **body: object) -> httpx.Response:
    return hub.client.post("/api/v1/tokens", json=body, headers=auth(token))


def test_whoami_names_the_user_and_describes_the_token(hub: Hub) -> None:
    token = hub.token("alice", read_only=True)
    answer = whoami(hub, token)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["user"] == "alice"
    assert set(body["token"]) == TOKEN_FIELDS
    assert body["token"]["lookup_id"] == lookup_id_of(token)
    assert body["token"]["read_only"] is True
    assert body["token"]["expires_at"] is None


def test_revoked_token_is_refused_with_401_saying_when_and_what_to_do(hub: Hub) -> None:
    token = hub.token("alice")
    assert revoke(hub, lookup_id_of(token), token).status_code == 204
    for answer in (
        whoami(hub, token),
        hub.upload("alice/a", lora_adapter(), token=token),
        hub.client.get("/api/v1/tokens", headers=auth(token)),
    ):
        assert answer.status_code == 401, answer.text
        assert answer.headers["www-authenticate"] == "Bearer"
        assert REVOKED.fullmatch(answer.json()["detail"])


def test_expired_token_is_refused_with_401_saying_when(hub: Hub) -> None:
    token = token_expiring_at(hub, datetime(2020, 5, 4, 3, 2, tzinfo=UTC))
    answer = whoami(hub, token)
    assert answer.status_code == 401
    assert answer.json()["detail"] == (
        "this token expired on 2020-05-04 03:02 UTC; "
        "create a new one with `compeft-hub token create`"
    )


def test_token_works_until_its_expiry(hub: Hub) -> None:
    expires_at = utc_now() + timedelta(hours=1)
    answer = whoami(hub, token_expiring_at(hub, expires_at))
    assert answer.status_code == 200, answer.text
    assert datetime.fromisoformat(answer.json()["token"]["expires_at"]) == expires_at


def test_a_wrong_secret_does_not_learn_that_a_token_was_revoked(hub: Hub) -> None:
    token = hub.token("alice")
    revoke(hub, lookup_id_of(token), token)
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    answer = whoami(hub, wrong)
    assert answer.status_code == 401
    assert answer.json()["detail"].startswith("invalid token")


def test_list_shows_the_callers_tokens_and_never_a_secret(hub: Hub) -> None:
    caller = hub.token("alice")
    read_only = hub.token("alice", read_only=True)
    revoked = hub.token("alice")
    revoke(hub, lookup_id_of(revoked), caller)
    bobs = hub.token("bob")
    answer = hub.client.get("/api/v1/tokens", headers=auth(read_only))  # read-only may list
    assert answer.status_code == 200, answer.text
    tokens = answer.json()["tokens"]
    assert [item["lookup_id"] for item in tokens] == [
        lookup_id_of(token) for token in (caller, read_only, revoked)
    ]
    assert all(set(item) == TOKEN_FIELDS for item in tokens)
    assert [item["read_only"] for item in tokens] == [False, True, False]
    assert [item["revoked_at"] is not None for item in tokens] == [False, False, True]
    with hub.sessions() as session:
        rows = session.scalars(select(ApiToken)).all()
    for token in (caller, read_only, revoked, bobs):
        assert secret_of(token) not in answer.text
    for row in rows:
        assert row.salt not in answer.text
        assert row.secret_hash not in answer.text
    assert lookup_id_of(bobs) not in answer.text


def test_revoking_another_users_token_is_not_found_and_leaves_it_valid(hub: Hub) -> None:
    alices, bobs = hub.token("alice"), hub.token("bob")
    for lookup_id in (lookup_id_of(bobs), "0123456789abcdef", "not-a-lookup-id"):
        answer = revoke(hub, lookup_id, alices)
        assert answer.status_code == 404, answer.text
        assert answer.json()["detail"].startswith(f"no token {lookup_id!r} of user 'alice'")
    assert whoami(hub, bobs).status_code == 200


def test_revoking_twice_succeeds_and_keeps_the_first_time(hub: Hub) -> None:
    caller, victim = hub.token("alice"), hub.token("alice")
    assert revoke(hub, lookup_id_of(victim), caller).status_code == 204
    first = hub.client.get("/api/v1/tokens", headers=auth(caller)).json()["tokens"][1]
    assert revoke(hub, lookup_id_of(victim), caller).status_code == 204
    again = hub.client.get("/api/v1/tokens", headers=auth(caller)).json()["tokens"][1]
    assert again["revoked_at"] == first["revoked_at"] is not None


def test_read_only_token_may_revoke_itself_but_no_other_token(hub: Hub) -> None:
    read_write, read_only = hub.token("alice"), hub.token("alice", read_only=True)
    refused = revoke(hub, lookup_id_of(read_write), read_only)
    assert refused.status_code == 403
    assert "read-only token can revoke only itself" in refused.json()["detail"]
    assert whoami(hub, read_write).status_code == 200
    assert revoke(hub, lookup_id_of(read_only), read_only).status_code == 204
    assert whoami(hub, read_only).status_code == 401


def test_created_token_is_shown_once_and_works(hub: Hub) -> None:
    caller = hub.token("alice")
    answer = create(hub, caller, name="ci runner", expires_in_days=30, read_only=True)
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert set(created) == TOKEN_FIELDS | {"token"}
    assert created["name"] == "ci runner"
    assert created["read_only"] is True
    days = datetime.fromisoformat(created["expires_at"]) - datetime.fromisoformat(
        created["created_at"]
    )
    assert abs(days - timedelta(days=30)) < timedelta(minutes=1)
    me = whoami(hub, created["token"]).json()
    assert me["token"] == {key: created[key] for key in TOKEN_FIELDS}
    listing = hub.client.get("/api/v1/tokens", headers=auth(caller)).text
    assert created["lookup_id"] in listing
    assert secret_of(created["token"]) not in listing


def test_read_only_token_creates_only_read_only_tokens(hub: Hub) -> None:
    read_only = hub.token("alice", read_only=True)
    refused = create(hub, read_only, read_only=False)
    assert refused.status_code == 403
    assert "can create only read-only tokens" in refused.json()["detail"]
    inherited = create(hub, read_only)
    assert inherited.status_code == 201, inherited.text
    assert inherited.json()["read_only"] is True
    assert hub.upload("alice/a", lora_adapter(), token=inherited.json()["token"]).status_code == 403


def test_expiring_token_cannot_create_one_that_outlives_it(hub: Hub) -> None:
    expires_at = utc_now() + timedelta(days=5)
    caller = token_expiring_at(hub, expires_at)
    refused = create(hub, caller, expires_in_days=30)
    assert refused.status_code == 403
    assert "cannot create one that outlives it" in refused.json()["detail"]
    inherited = create(hub, caller)
    assert datetime.fromisoformat(inherited.json()["expires_at"]) == expires_at
    shorter = create(hub, caller, expires_in_days=1)
    assert datetime.fromisoformat(shorter.json()["expires_at"]) < expires_at


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"expires_in_days": 10**6}, "expires_in_days"),
        ({"name": "tab\there"}, "name"),
        ({"name": ""}, "name"),
        ({"scope": "admin"}, "scope"),
    ],
)
def test_invalid_token_requests_answer_422_naming_the_field(
    hub: Hub, body: dict[str, object], field: str
) -> None:
    answer = create(hub, hub.token("alice"), **body)
    assert answer.status_code == 422
    assert field in answer.json()["detail"]


def test_account_endpoints_need_a_token(hub: Hub) -> None:
    for method, path in [
        ("GET", "/api/v1/whoami"),
        ("GET", "/api/v1/tokens"),
        ("POST", "/api/v1/tokens"),
        ("DELETE", "/api/v1/tokens/0123456789abcdef"),
    ]:
        answer = hub.client.request(method, path, json={} if method == "POST" else None)
        assert answer.status_code == 401, f"{method} {path}: {answer.text}"
        assert "needs a token" in answer.json()["detail"]


def test_downgrade_deletes_the_tokens_older_code_could_not_refuse(hub: Hub) -> None:
    valid, revoked = hub.token("alice"), hub.token("alice")
    revoke(hub, lookup_id_of(revoked), valid)
    with hub.sessions() as session:
        create_token(session, user_name="alice", expires_at=utc_now() + timedelta(days=1))
    engine = create_db_engine(hub.settings.sqlalchemy_url)
    try:
        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), "0003")
        with engine.connect() as connection:
            kept = connection.exec_driver_sql("SELECT lookup_id FROM api_tokens").scalars().all()
        assert kept == [lookup_id_of(valid)]
    finally:
        upgrade_schema(engine)
        engine.dispose()


def test_sdk_whoami_lists_creates_and_revokes(
    hub_client: HubClient, live_hub: LiveHub, tmp_path: Path
) -> None:
    me = hub_client.whoami()
    assert me.user == "alice" and me.token.read_only is False
    created = hub_client.create_token(read_only=True, expires_in_days=7, name="laptop")
    assert created.read_only and created.name == "laptop"
    listed = hub_client.list_tokens()
    assert [info.lookup_id for info in listed] == [me.token.lookup_id, created.lookup_id]
    with live_hub.client(tmp_path / "other", token=created.token) as laptop:
        assert laptop.whoami().token.lookup_id == created.lookup_id
        with pytest.raises(ForbiddenError, match="read-only"):
            laptop.create_token(read_only=False)
        hub_client.revoke_token(created.lookup_id)
        hub_client.revoke_token(created.lookup_id)  # again: no error
        with pytest.raises(AuthError, match="this token was revoked on"):
            laptop.whoami()
    with pytest.raises(NotFoundError, match="no token"):
        hub_client.revoke_token("0123456789abcdef")


def test_cli_whoami_prints_the_user_and_the_token(hub_cli: RunCli, live_hub: LiveHub) -> None:
    result = hub_cli("whoami")
    assert result.exit_code == 0, result.output
    user, token = result.stdout.splitlines()
    assert user == "alice"
    assert token.endswith(": read-write, no expiry")
    expiring = token_expiring_at(live_hub.hub, datetime(2999, 1, 2, tzinfo=UTC))
    described = hub_cli("whoami", "--token", expiring).stdout
    assert f"token {lookup_id_of(expiring)}: read-write, expires 2999-01-02 00:00 UTC" in described


def test_cli_whoami_with_a_revoked_token_fails_with_the_reason(
    hub_cli: RunCli, live_hub: LiveHub
) -> None:
    token = live_hub.hub.token("alice")
    live_hub.hub.client.delete(f"/api/v1/tokens/{lookup_id_of(token)}", headers=auth(token))
    result = hub_cli("whoami", "--token", token)
    assert result.exit_code == 1
    assert "401: this token was revoked on" in result.stderr
    assert "Traceback" not in result.output


def own_lookup_id(hub_cli: RunCli) -> str:
    """The lookup id of the token `hub_cli` sends (COMPEFT_HUB_TOKEN), as whoami shows it."""
    line = hub_cli("whoami").stdout.splitlines()[1]
    return line.removeprefix("token ").partition(":")[0]


def cli_on_database(live_hub: LiveHub, *args: str, token: str | None = None) -> Result:
    """`compeft-hub ARGS...` configured with the live hub's database and endpoint, and with
    COMPEFT_HUB_TOKEN set to `token` (None: unset, whatever the shell running the tests has)."""
    env = {
        "COMPEFT_HUB_DATABASE_URL": live_hub.hub.settings.sqlalchemy_url,
        "COMPEFT_HUB_ENDPOINT": live_hub.url,
        "COMPEFT_HUB_TOKEN": token,
    }
    return CliRunner().invoke(cli_app, list(args), env=env)


def test_cli_token_list_without_a_name_shows_the_callers_tokens_from_the_hub(
    hub_cli: RunCli, live_hub: LiveHub
) -> None:
    created = hub_cli("token", "create", "--read-only", "--name", "laptop")
    assert created.exit_code == 0, created.output
    assert created.stderr == f"hub: {live_hub.url}\n"
    laptop = created.stdout.strip()
    assert hub_cli("whoami", "--token", laptop).stdout.splitlines()[1] == (
        f"token {lookup_id_of(laptop)} 'laptop': read-only, no expiry"
    )
    listed = hub_cli("token", "list")
    assert listed.exit_code == 0, listed.output
    assert listed.stderr == f"hub: {live_hub.url}\n"
    own, new = listed.stdout.splitlines()
    assert re.fullmatch(rf"{own_lookup_id(hub_cli)}  read-write  created {WHEN}  no expiry", own)
    assert re.fullmatch(
        rf"{lookup_id_of(laptop)}  read-only   created {WHEN}  no expiry {{19}}  laptop", new
    )
    assert laptop not in listed.output
    # A user name means the operator's listing, on the database, even with a token configured:
    # the same lines.
    operator = cli_on_database(live_hub, "token", "list", "alice", token=laptop)
    assert operator.exit_code == 0, operator.output
    assert operator.stderr.startswith("database: ")
    assert operator.stdout == listed.stdout


def test_cli_token_revoke_with_a_token_revokes_over_http_and_the_token_is_refused(
    hub_cli: RunCli, live_hub: LiveHub
) -> None:
    laptop = hub_cli("token", "create", "--name", "laptop").stdout.strip()
    assert hub_cli("whoami", "--token", laptop).exit_code == 0
    revoked = hub_cli("token", "revoke", lookup_id_of(laptop))
    assert revoked.exit_code == 0, revoked.output
    assert revoked.stderr == f"hub: {live_hub.url}\n"
    assert re.fullmatch(rf"token {lookup_id_of(laptop)}: revoked {WHEN}\n", revoked.stdout)
    refused = hub_cli("whoami", "--token", laptop)
    assert refused.exit_code == 1
    assert "401: this token was revoked on" in refused.stderr
    assert re.search(rf"  revoked {WHEN} +laptop$", hub_cli("token", "list").stdout)


def test_cli_read_only_token_cannot_revoke_another_but_may_revoke_itself(
    hub_cli: RunCli, live_hub: LiveHub
) -> None:
    read_write = live_hub.hub.token("alice")
    read_only = hub_cli("token", "create", "--read-only").stdout.strip()
    refused = hub_cli("token", "revoke", lookup_id_of(read_write), "--token", read_only)
    assert refused.exit_code == 1
    hub_line, error = refused.stderr.splitlines()
    assert hub_line == f"hub: {live_hub.url}"
    assert error.startswith("error: DELETE ") and "403" in error
    assert "a read-only token can revoke only itself" in error
    assert hub_cli("whoami", "--token", read_write).exit_code == 0
    # Without --read-only, a new token inherits the caller's rights instead of asking for more.
    child = hub_cli("token", "create", "--token", read_only)
    assert child.exit_code == 0, child.output
    assert hub_cli("whoami", "--token", child.stdout.strip()).stdout.endswith(
        ": read-only, no expiry\n"
    )
    itself = hub_cli("token", "revoke", lookup_id_of(read_only), "--token", read_only)
    assert itself.exit_code == 0, itself.output
    assert (
        itself.stdout == f"token {lookup_id_of(read_only)}: revoked (the token this command used)\n"
    )
    assert hub_cli("whoami", "--token", read_only).exit_code == 1


def test_cli_token_errors_from_the_hub_print_one_line_and_exit_1(
    hub_cli: RunCli, live_hub: LiveHub
) -> None:
    unknown = hub_cli("token", "revoke", "0123456789abcdef")
    assert unknown.exit_code == 1
    _, error = unknown.stderr.splitlines()  # `hub: URL`, then the error
    assert (
        error.startswith("error: ") and "404: no token '0123456789abcdef' of user 'alice'" in error
    )
    token = live_hub.hub.token("alice")
    assert hub_cli("token", "revoke", lookup_id_of(token), "--token", token).exit_code == 0
    for args in (("list",), ("create",), ("revoke", "0123456789abcdef")):
        result = hub_cli("token", *args, "--token", token)
        assert result.exit_code == 1, args
        error = result.stderr.splitlines()[-1]
        assert error.startswith("error: ") and "401: this token was revoked on" in error
        assert "Traceback" not in result.output


@pytest.mark.parametrize("subcommand", ["list", "create"])
def test_cli_token_without_a_name_or_a_token_names_both_ways(
    live_hub: LiveHub, subcommand: str
) -> None:
    result = cli_on_database(live_hub, "token", subcommand)
    assert result.exit_code == 1
    assert result.stderr == (
        "error: give a user NAME (the operator's way, on the hub's database) or an API token "
        "(--token or COMPEFT_HUB_TOKEN: your own tokens, over HTTP at the hub)\n"
    )
    assert result.stdout == ""


def test_cli_token_revoke_without_a_token_is_the_operators_on_the_database(
    live_hub: LiveHub,
) -> None:
    bobs = live_hub.hub.token("bob")
    result = cli_on_database(live_hub, "token", "revoke", lookup_id_of(bobs))
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("database: ")
    assert re.fullmatch(rf"token {lookup_id_of(bobs)} of bob: revoked {WHEN}\n", result.stdout)
    assert whoami(live_hub.hub, bobs).status_code == 401
