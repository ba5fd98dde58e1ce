"""The `compeft-hub` command, run in-process with the same settings a server would read."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from bench.adapter_files import lora_adapter
from registry.cli.main import app
from registry.db.engine import create_db_engine
from registry.db.models import utc_now
from registry.db.schema import alembic_config
from registry.settings import Settings
from tests.fixtures.registry import Hub, auth
from tests.test_hardening_access import secret_of


@pytest.fixture
def blob_store_url(tmp_path: Path) -> str:
    """The CLI sees the blob store only through fsck: the local folder is enough."""
    return (tmp_path / "blobs").as_uri()


Run = Callable[..., Result]


@pytest.fixture
def run(hub: Hub) -> Run:
    """Run `compeft-hub ARGS...` against the hub's database and blob store, as the operator: no
    API token, even where the shell running the tests has one (`token revoke` would use it)."""
    env = {
        "COMPEFT_HUB_DATABASE_URL": hub.settings.sqlalchemy_url,
        "COMPEFT_HUB_BLOB_STORE_URL": hub.settings.storage_url,
        "COMPEFT_HUB_TOKEN": None,
    }

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(app, list(args), env=env)

    return invoke


def test_help_lists_every_command(run: Run) -> None:
    result = run("--help")
    assert result.exit_code == 0
    for name in ("serve", "db", "user", "token", "fsck"):
        assert name in result.output
    token_help = run("token", "--help").output
    for name in ("create", "list", "revoke"):
        assert name in token_help


def test_help_texts_name_real_defaults_and_what_a_token_is_for() -> None:
    """Typer renders help through rich, which swallows `[default: ...]` as markup: the texts say
    the defaults in words, and they are the settings' own."""
    wide = {"COLUMNS": "200"}
    serve_help = " ".join(CliRunner().invoke(app, ["serve", "--help"], env=wide).output.split())
    assert f"env COMPEFT_HUB_HOST, else {Settings.model_fields['host'].default})" in serve_help
    assert f"env COMPEFT_HUB_PORT, else {Settings.model_fields['port'].default})" in serve_help
    pull_help = " ".join(CliRunner().invoke(app, ["pull", "--help"], env=wide).output.split())
    assert "Uploads and whoami need one; reads do not." in pull_help


def test_token_help_says_when_a_command_acts_over_http_and_when_on_the_database() -> None:
    rule = (
        "With an API token (--token or COMPEFT_HUB_TOKEN) and no user NAME: your own tokens, over "
        "HTTP at the hub (--endpoint / COMPEFT_HUB_ENDPOINT); with a user NAME (or, for revoke, "
        "without a token): the operator's, on the database."
    )
    shown = {
        words: " ".join(
            CliRunner()
            .invoke(app, ["token", *words, "--help"], env={"COLUMNS": "200"})
            .output.split()
        )
        for words in ((), ("create",), ("list",), ("revoke",))
    }
    for words, text in shown.items():
        assert rule in text, words
    # Rich would swallow a `[default: ...]` as markup: the defaults are said in words.
    assert "after this many days (default: never; over HTTP, when the" in shown[("create",)]


def test_user_create_prints_a_token_that_can_upload(hub: Hub, run: Run) -> None:
    result = run("user", "create", "carol")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert hub.upload("carol/poems", lora_adapter(), token=token).status_code == 201


def test_operator_commands_say_which_database_and_blob_store_they_act_on(
    hub: Hub, run: Run
) -> None:
    database = make_url(hub.settings.sqlalchemy_url).render_as_string(hide_password=True)
    created = run("user", "create", "carol")
    assert created.stderr.splitlines() == [f"database: {database}"]
    checked = run("fsck")
    assert checked.stderr.splitlines()[:2] == [
        f"database: {database}",
        f"blob store: {hub.settings.storage_url}",
    ]


def test_operator_commands_run_where_no_hub_lives_create_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in (
        "COMPEFT_HUB_DATABASE_URL",
        "DATABASE_URL",
        "COMPEFT_HUB_DATA_DIR",
        "COMPEFT_HUB_BLOB_STORE_URL",
    ):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    for args in (["user", "create", "carol"], ["token", "list", "carol"], ["fsck"], ["reembed"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.startswith(
            f"error: no hub database at {tmp_path / 'hub-data' / 'hub.sqlite3'}: run this where"
        )
    assert list(tmp_path.iterdir()) == []
    upgraded = CliRunner().invoke(app, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert (tmp_path / "hub-data" / "hub.sqlite3").is_file()
    assert CliRunner().invoke(app, ["user", "create", "carol"]).exit_code == 0


def test_read_only_token_cannot_upload(hub: Hub, run: Run) -> None:
    run("user", "create", "carol")
    result = run("token", "create", "--user", "carol", "--read-only")
    assert result.exit_code == 0, result.output
    assert hub.upload("carol/poems", lora_adapter(), token=result.stdout.strip()).status_code == 403


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("token", "create", "nobody"), "no user named 'nobody'"),
        (("user", "create", "bad..name"), "invalid user name"),
        (("token", "list", "nobody"), "no user named 'nobody'"),
        (("token", "revoke", "0123456789abcdef"), "no token '0123456789abcdef'"),
    ],
)
def test_mistakes_print_one_line_and_fail(run: Run, args: tuple[str, ...], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_token_list_and_revoke_manage_a_users_tokens(hub: Hub, run: Run) -> None:
    first = run("user", "create", "carol").stdout.strip()
    created = run(
        "token", "create", "carol", "--read-only", "--expires-in-days", "7", "--name", "ci"
    )
    assert created.exit_code == 0, created.output
    second = created.stdout.strip()
    first_id, second_id = (token.split("_")[1] for token in (first, second))

    listed = run("token", "list", "carol")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        [first_id, "read-write"],
        [second_id, "read-only"],
    ]
    assert "no expiry" in lines[0] and lines[1].endswith("  ci")
    expires = (utc_now() + timedelta(days=7)).strftime("%Y-%m-%d")
    assert f"expires {expires}" in lines[1]
    assert secret_of(first) not in listed.stdout and secret_of(second) not in listed.stdout

    revoked = run("token", "revoke", second_id)
    assert revoked.exit_code == 0, revoked.output
    assert revoked.stdout.startswith(f"token {second_id} of carol: revoked ")
    refused = hub.client.get("/api/v1/whoami", headers=auth(second))
    assert refused.status_code == 401
    assert "this token was revoked on" in refused.json()["detail"]
    assert "revoked" in run("token", "list", "carol").stdout.splitlines()[1]
    assert run("token", "revoke", second_id).exit_code == 0  # again: nothing changes
    assert hub.client.get("/api/v1/whoami", headers=auth(first)).status_code == 200


def test_token_create_refuses_a_bad_expiry_or_name(run: Run) -> None:
    run("user", "create", "carol")
    expiry = run("token", "create", "carol", "--expires-in-days", "0")
    assert expiry.exit_code == 2
    assert "--expires-in-days" in expiry.output
    name = run("token", "create", "carol", "--name", "tab\there")
    assert name.exit_code == 1
    assert "invalid token name 'tab\\there'" in name.stderr


def test_duplicate_user_is_refused(run: Run) -> None:
    assert run("user", "create", "carol").exit_code == 0
    result = run("user", "create", "carol")
    assert result.exit_code == 1
    assert "already exists" in result.stderr


def test_serve_refuses_an_old_schema_until_db_upgrade(hub: Hub, run: Run) -> None:
    engine = create_db_engine(hub.settings.sqlalchemy_url)
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    engine.dispose()
    refused = run("serve")
    assert refused.exit_code == 1
    assert "run `compeft-hub db upgrade`" in refused.stderr
    upgraded = run("db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert "database schema at" in upgraded.stdout
    assert run("db", "upgrade").exit_code == 0


def test_fsck_finds_and_repairs_orphans_and_dangling_rows(hub: Hub, run: Run) -> None:
    token = hub.token("alice")
    kept = hub.upload("alice/kept", lora_adapter(seed=1), token=token).json()["blob_sha256"]
    lost = hub.upload("alice/lost", lora_adapter(seed=2), token=token).json()["blob_sha256"]
    hub.store.delete(lost)
    orphan = lora_adapter(seed=3).weights
    orphan_key = hashlib.sha256(orphan).hexdigest()
    hub.store.put_stream(orphan_key, io.BytesIO(orphan), sha256=orphan_key, size=len(orphan))

    found = run("fsck")
    assert found.exit_code == 1
    assert "revisions whose blob is missing: 1" in found.stdout
    assert f"alice/lost revision 1: blob {lost}" in found.stdout
    assert "blobs no revision references: 1" in found.stdout
    assert orphan_key in found.stdout

    repaired = run("fsck", "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert "deleted 1 orphan blob(s), flagged 1 revision(s) as missing" in repaired.stdout
    assert hub.blob_keys() == {kept}
    response = hub.client.get("/api/v1/experts/alice/lost/revisions/1")
    assert response.json()["blob_missing"] is True
    download = hub.client.get("/api/v1/experts/alice/lost/revisions/1/blob")
    assert download.status_code == 404
    assert "fsck" in download.json()["detail"]


def test_fsck_unflags_a_revision_whose_blob_came_back(hub: Hub, run: Run) -> None:
    token = hub.token("alice")
    key = hub.upload("alice/lost", lora_adapter(), token=token).json()["blob_sha256"]
    hub.store.delete(key)
    run("fsck", "--repair")
    hub.upload("alice/again", lora_adapter(), token=token)  # same content: same blob
    result = run("fsck", "--repair")
    assert "unflagged 1" in result.stdout
    assert hub.client.get("/api/v1/experts/alice/lost/revisions/1/blob").status_code == 200
    assert run("fsck").exit_code == 0
