"""Settings come from COMPEFT_HUB_* variables; the defaults are the embedded setup."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from registry.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)


def test_defaults_are_sqlite_and_a_blob_folder_under_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.sqlalchemy_url == f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    assert settings.storage_url == (tmp_path / "blobs").as_uri()
    assert settings.auto_upgrade is True
    assert (settings.default_density, settings.default_scope) == (0.1, "tensor")


def test_environment_variables_configure_a_production_setup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://hub@db/hub")
    monkeypatch.setenv("COMPEFT_HUB_STORAGE_URL", "s3://experts/blobs")
    monkeypatch.setenv("COMPEFT_HUB_S3_ENDPOINT_URL", "http://127.0.0.1:8333")
    monkeypatch.setenv("COMPEFT_HUB_MAX_UPLOAD_BYTES", "1000")
    settings = Settings()
    assert settings.sqlalchemy_url == "postgresql+psycopg://hub@db/hub"
    assert settings.storage_url == "s3://experts/blobs?endpoint_url=http%3A%2F%2F127.0.0.1%3A8333"
    assert settings.max_upload_bytes == 1000
    assert settings.auto_upgrade is False


def test_prefixed_database_url_wins_over_the_generic_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://generic/db")
    monkeypatch.setenv("COMPEFT_HUB_DATABASE_URL", "sqlite:////tmp/hub.sqlite3")
    assert Settings().sqlalchemy_url == "sqlite:////tmp/hub.sqlite3"


def test_endpoint_in_the_url_is_kept() -> None:
    url = "s3://b/p?endpoint_url=http://a:1"
    settings = Settings(blob_store_url=url, s3_endpoint_url="http://other:2")
    assert settings.storage_url == url


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_UPLOAD_BYTES", "0"),
        ("DEFAULT_DENSITY", "1.5"),
        ("DEFAULT_SCOPE", "row"),
        ("PORT", "x"),
    ],
)
def test_invalid_values_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"COMPEFT_HUB_{name}", value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings()
