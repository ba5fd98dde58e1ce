"""Where the client looks for the hub: a refused connection fails at once with what to do, and
an endpoint that cannot be one says so before anything is sent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tenacity.nap
from typer.testing import CliRunner

from bench.seaweedfs import free_ports
from registry.cli.main import app as cli
from registry.client import HubClient, RetryPolicy, ServerUnavailableError
from tests.fixtures.live_hub import LiveHub, RunCli

PATIENT = RetryPolicy(attempts=5, initial_wait_s=2.0)


def test_a_refused_connection_is_not_retried_and_says_how_to_start_a_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(tenacity.nap.time, "sleep", waits.append)
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    with (
        HubClient(url, cache_dir=tmp_path, retry=PATIENT) as client,
        pytest.raises(ServerUnavailableError) as down,
    ):
        client.info("alice/qa")
    assert str(down.value) == (
        f"nothing answers at {url} (connection refused): is the hub running? Start one with "
        "`compeft-hub serve`, or give its URL with --endpoint or COMPEFT_HUB_ENDPOINT"
    )
    assert waits == []  # no backoff: the first refusal ends the call


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "the hub URL is empty: give the hub's URL (like http://127.0.0.1:8000)"),
        ("localhost:8000", "'localhost:8000' is not an http(s) URL"),
        ("ftp://hub.example", "'ftp://hub.example' is not an http(s) URL"),
        ("http://hub.example:99999", "is not a URL: Port out of range"),
    ],
    ids=["empty", "no-scheme", "ftp", "bad-port"],
)
def test_an_endpoint_that_cannot_be_a_hub_is_refused_before_any_call(
    tmp_path: Path, url: str, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        HubClient(url, cache_dir=tmp_path)


def test_the_api_prefix_and_trailing_slashes_are_dropped(tmp_path: Path) -> None:
    for given in (
        "http://hub.example:8000/api/v1",
        "http://hub.example:8000/api/v1/",
        "http://hub.example:8000//",
    ):
        with HubClient(given, cache_dir=tmp_path) as client:
            assert client.endpoint == "http://hub.example:8000"


def test_the_cli_says_in_one_line_what_is_wrong_with_the_endpoint(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    env = {"COMPEFT_HUB_CACHE": str(tmp_path / "cache")}
    refused = CliRunner().invoke(
        cli, ["pull", "alice/qa", "--endpoint", f"http://127.0.0.1:{port}"], env=env
    )
    assert refused.exit_code == 1
    assert refused.stderr == (
        f"error: nothing answers at http://127.0.0.1:{port} (connection refused): is the hub "
        "running? Start one with `compeft-hub serve`, or give its URL with --endpoint or "
        "COMPEFT_HUB_ENDPOINT\n"
    )
    empty = CliRunner().invoke(cli, ["pull", "alice/qa"], env={**env, "COMPEFT_HUB_ENDPOINT": ""})
    assert empty.exit_code == 1
    assert empty.stderr.startswith("error: COMPEFT_HUB_ENDPOINT is empty: give the hub's URL")


def test_an_endpoint_given_with_the_api_prefix_reaches_the_hub(
    live_hub: LiveHub, hub_cli: RunCli
) -> None:
    result = hub_cli("whoami", "--endpoint", f"{live_hub.url}/api/v1/")
    assert result.exit_code == 0, result.output
    assert "alice" in result.stdout
