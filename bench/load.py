"""Load: two API processes sharing PostgreSQL and SeaweedFS under 64 concurrent clients.

Starts SeaweedFS (`weed mini`, as the test fixture does) and a fresh database on the PostgreSQL
server of DATABASE_URL (default: postgres on 127.0.0.1:5432), then two `compeft-hub serve`
processes on two loopback ports. 64 asynchronous clients (httpx), each with its own user and
token and half of them on each process, send N mixed requests: uploads of small LoRA adapters
(a new expert or the next revision of one of the client's own), metadata reads, listings, blob
downloads, deletes of the client's own experts, and searches when the API has them.

Afterwards `compeft-hub fsck` must find 0 revisions without blob and 0 blobs without revision,
and every acknowledged upload of an expert that was not deleted must download, hash to the
sha256 announced at upload and decode.

    python -m bench.load            # 5,000 requests
    python -m bench.load --quick    # 300 requests, ~30 s; run by tests/test_bench_load.py

The last line is one JSON object: requests, errors_5xx, dangling, orphans, p99_ms, and
throughput_rps, p50_ms, per-kind latencies, the status counts and the verification results.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import subprocess
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy.engine import make_url

from bench.adapter_files import lora_adapter
from bench.api_process import (
    AcknowledgedUpload,
    ApiProcess,
    compeft_hub_command,
    damaged_uploads,
    upload_form,
    upload_path,
)
from bench.postgres import fresh_postgres_database
from bench.seaweedfs import SeaweedS3
from registry.db.engine import create_db_engine, create_session_factory
from registry.services.accounts import create_token, create_user

CLIENTS = 64
DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BASE_MODEL = "tiny/llama"  # what lora_adapter's config names
MIX = {"upload": 25, "detail": 20, "list": 15, "blob": 20, "delete": 5, "search": 15}
QUERIES = ["answer trivia questions", "translate to French", "summarize news", "write poems"]


@dataclass
class Outcome:
    """One request as the client saw it."""

    kind: str
    status: int  # 0: no answer (connection error)
    seconds: float


@dataclass
class Client:
    """One simulated user: its experts, and its connection (token, API process) to the hub."""

    user: str
    http: httpx.AsyncClient
    experts: list[str] = field(default_factory=list)
    created: int = 0  # names are never reused: a deleted name stays deleted in the bookkeeping


@dataclass
class Workload:
    """Shared state of the run: the request budget, what is live, what was acknowledged."""

    total: int
    search: bool
    rng: random.Random
    issued: int = 0
    acknowledged: dict[str, list[AcknowledgedUpload]] = field(
        default_factory=lambda: defaultdict(list)
    )
    deleted: set[str] = field(default_factory=set)
    outcomes: list[Outcome] = field(default_factory=list)
    seeds: Iterator[int] = field(default_factory=itertools.count)

    def live_revisions(self) -> list[AcknowledgedUpload]:
        return [
            u
            for expert, ups in self.acknowledged.items()
            if expert not in self.deleted
            for u in ups
        ]

    def pick_kind(self, client: Client) -> str:
        kinds = [k for k in MIX if self.search or k != "search"]
        kind = self.rng.choices(kinds, weights=[MIX[k] for k in kinds])[0]
        if kind in ("detail", "blob") and not self.live_revisions():
            return "upload"
        if kind == "delete" and not client.experts:
            return "upload"
        return kind

    async def send(self, client: Client, kind: str) -> httpx.Response:
        """One request of `kind`; bookkeeping of uploads and deletes happens on success."""
        http = client.http
        if kind == "upload":
            if client.experts and self.rng.random() < 0.5:
                expert = self.rng.choice(client.experts)
            else:
                expert = f"{client.user}/e{client.created}"
                client.created += 1
                client.experts.append(expert)
            form = upload_form(lora_adapter(seed=next(self.seeds)))
            response = await http.post(upload_path(expert), **form)
            if response.status_code == 201:
                self.acknowledged[expert].append(AcknowledgedUpload.from_answer(response.json()))
            return response
        if kind == "delete":
            expert = client.experts.pop(self.rng.randrange(len(client.experts)))
            response = await http.delete(f"/api/v1/experts/{expert}")
            if response.status_code == 204:
                self.deleted.add(expert)
            return response
        if kind == "list":
            return await http.get(
                "/api/v1/experts", params={"limit": 20, "offset": self.rng.randrange(50)}
            )
        if kind == "search":
            return await http.post(
                "/api/v1/search",
                json={"base_model": BASE_MODEL, "k": 5, "query": self.rng.choice(QUERIES)},
            )
        upload = self.rng.choice(self.live_revisions())
        path = f"/api/v1/experts/{upload.expert}/revisions/{upload.revision}"
        return await http.get(path + ("/blob" if kind == "blob" else ""))

    async def run_client(self, client: Client) -> None:
        while self.issued < self.total:
            self.issued += 1
            kind = self.pick_kind(client)
            start = time.perf_counter()
            try:
                status = (await self.send(client, kind)).status_code
            except httpx.HTTPError:
                status = 0
            self.outcomes.append(Outcome(kind, status, time.perf_counter() - start))


@contextmanager
def seaweedfs(folder: Path) -> Iterator[tuple[SeaweedS3, str]]:
    """A running SeaweedFS with one bucket; the blob store URL of the API processes."""
    folder.mkdir()
    server = SeaweedS3(folder)
    server.start()
    try:
        bucket = f"load-{uuid.uuid4().hex[:12]}"
        server.client().create_bucket(Bucket=bucket)
        yield server, f"s3://{bucket}/blobs?endpoint_url={server.endpoint_url}"
    finally:
        server.stop()


def create_clients(database_url: str, count: int) -> list[tuple[str, str]]:
    """(user, token) pairs, one user per client, created in the database directly."""
    engine = create_db_engine(database_url)
    pairs = []
    try:
        with create_session_factory(engine)() as session:
            for number in range(count):
                user = f"load{number}"
                create_user(session, name=user)
                pairs.append((user, create_token(session, user_name=user)))
    finally:
        engine.dispose()
    return pairs


async def drive(urls: list[str], users: list[tuple[str, str]], workload: Workload) -> float:
    """Run the workload with one client per user, alternating between the API processes."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with AsyncExitStack() as stack:
        clients = [
            Client(
                user,
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        base_url=urls[number % len(urls)],
                        timeout=300,
                        limits=limits,
                        headers={"Authorization": f"Bearer {token}"},
                    )
                ),
            )
            for number, (user, token) in enumerate(users)
        ]
        start = time.perf_counter()
        await asyncio.gather(*(workload.run_client(client) for client in clients))
        return time.perf_counter() - start


def run_fsck(environment: dict[str, str]) -> tuple[int, int, str]:
    """`compeft-hub fsck` as an operator runs it: (dangling revisions, orphan blobs, output)."""
    completed = subprocess.run(
        [*compeft_hub_command(), "fsck"],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = completed.stdout + completed.stderr

    def count(label: str) -> int:
        match = re.search(rf"^{label}: (\d+)$", output, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"unexpected `compeft-hub fsck` output:\n{output}")
        return int(match.group(1))

    return count("revisions whose blob is missing"), count("blobs no revision references"), output


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    values = np.array(seconds) * 1000
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 1),
        "p99_ms": round(float(np.percentile(values, 99)), 1),
    }


def run(total: int, database_server: str, folder: Path) -> dict[str, Any]:
    """Start everything, drive `total` requests, check the stores; the summary."""
    with ExitStack() as stack:
        database_url = stack.enter_context(
            fresh_postgres_database(make_url(database_server), prefix="compeft_load")
        )
        s3, blob_store_url = stack.enter_context(seaweedfs(folder / "seaweedfs"))
        environment = {
            **s3.environment(),
            "COMPEFT_HUB_DATA_DIR": str(folder / "data"),
            "COMPEFT_HUB_DATABASE_URL": database_url,
            "COMPEFT_HUB_BLOB_STORE_URL": blob_store_url,
            # The simulated users all come from 127.0.0.1; real ones each have their address.
            "COMPEFT_HUB_REQUESTS_PER_MINUTE": "0",
        }
        users = create_clients(database_url, CLIENTS)
        servers = [ApiProcess(environment, folder / f"api-{n}.log") for n in range(2)]
        for server in servers:
            server.start()
            stack.callback(server.stop)
        search = "/api/v1/search" in httpx.get(f"{servers[0].url}/openapi.json").json()["paths"]
        workload = Workload(total, search, random.Random(0))
        print(
            f"{total} requests from {CLIENTS} clients on {[s.url for s in servers]}; "
            f"search {'on' if search else 'absent'}",
            flush=True,
        )
        seconds = asyncio.run(drive([s.url for s in servers], users, workload))

        if any(o.status >= 500 for o in workload.outcomes):
            for server in servers:
                print(f"--- {server.log_path.name} (server errors above) ---\n{server.log_tail()}")
        dangling, orphans, fsck_output = run_fsck(environment)
        print(fsck_output.strip())
        live = workload.live_revisions()
        with httpx.Client(base_url=servers[1].url, timeout=300) as client:
            damaged = damaged_uploads(client, live)
    for line in damaged[:20]:
        print("DAMAGED", line)

    outcomes = workload.outcomes
    statuses = Counter(o.status for o in outcomes)
    by_kind = {
        kind: {"n": len(times), **percentiles_ms(times)}
        for kind in MIX
        if (times := [o.seconds for o in outcomes if o.kind == kind])
    }
    return {
        "requests": len(outcomes),
        "errors_5xx": sum(n for status, n in statuses.items() if status >= 500),
        "dangling": dangling,
        "orphans": orphans,
        **percentiles_ms([o.seconds for o in outcomes]),
        "throughput_rps": round(len(outcomes) / seconds, 1),
        "no_answer": statuses[0],
        "statuses": {str(status): n for status, n in sorted(statuses.items())},
        "by_kind": by_kind,
        "acknowledged_uploads": sum(len(u) for u in workload.acknowledged.values()),
        "verified_uploads": len(live),
        "damaged_uploads": len(damaged),
        "clients": CLIENTS,
        "api_processes": 2,
    }


def print_report(summary: dict[str, Any]) -> None:
    print(
        f"{summary['requests']} requests in {summary['requests'] / summary['throughput_rps']:.1f}"
        f" s: {summary['throughput_rps']} req/s, p50 {summary['p50_ms']} ms, "
        f"p99 {summary['p99_ms']} ms, 5xx {summary['errors_5xx']}, "
        f"no answer {summary['no_answer']}"
    )
    print(f"{'kind':10}{'n':>8}{'p50 ms':>10}{'p99 ms':>10}")
    for kind, figures in summary["by_kind"].items():
        print(f"{kind:10}{figures['n']:>8}{figures['p50_ms']:>10}{figures['p99_ms']:>10}")
    print(f"statuses: {summary['statuses']}")
    print(
        f"fsck: {summary['dangling']} dangling, {summary['orphans']} orphans; "
        f"{summary['verified_uploads']} live acknowledged uploads verified, "
        f"{summary['damaged_uploads']} damaged"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run, print the report and the final JSON line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="300 requests instead of 5,000")
    parser.add_argument("--requests", type=int, help="number of requests (overrides --quick)")
    parser.add_argument(
        "--database-server",
        default=os.environ.get("DATABASE_URL", DEFAULT_SERVER),
        help="PostgreSQL server URL (a fresh database is created there and dropped at the end); "
        "default: DATABASE_URL, else " + DEFAULT_SERVER,
    )
    args = parser.parse_args(argv)
    total = args.requests or (300 if args.quick else 5000)
    with tempfile.TemporaryDirectory(prefix="compeft-load-") as folder:
        summary = run(total, args.database_server, Path(folder))
    print_report(summary)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
