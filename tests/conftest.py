"""Shared fixtures. Server fixtures live in tests/fixtures/ and are imported here by name."""

from tests.fixtures.live_hub import (  # noqa: F401
    hub_cli,
    hub_client,
    live_hub,
    peft_adapter_folders,
)
from tests.fixtures.registry import *  # hub, database_url and the fixtures they need
from tests.fixtures.seaweedfs import s3_bucket, s3_server  # noqa: F401
from tests.fixtures.smollm2 import smollm2  # noqa: F401
from tests.fixtures.web import browser, web_site  # noqa: F401
