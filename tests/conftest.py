"""Shared fixtures. Server fixtures live in tests/fixtures/ and are imported here by name."""

from tests.fixtures.live_hub import (  # noqa: F401
    hub_cli,
    hub_client,
    live_hub,
    peft_adapter_folders,
)
from tests.fixtures.registry import (  # noqa: F401
    blob_store_url,
    database_url,
    hub,
    hub_settings,
    no_leftover_upload_files,
    postgres_database_url,
    sqlite_template,
)
from tests.fixtures.seaweedfs import s3_bucket, s3_server  # noqa: F401
from tests.fixtures.smollm2 import smollm2  # noqa: F401
from tests.fixtures.web import browser, web_site  # noqa: F401
