"""Shared fixtures. Everything runs offline; flow tests share one local Prefect server, started
the way `llm4all` starts one (flows/cli/prefect_env.py) on a free loopback port."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before anything imports prefect or transformers: offline, quiet, project-local state.
_PREFECT_HOME = tempfile.mkdtemp(prefix="llm4all-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("LLM4ALL_HOME", None)
os.environ["LLM4ALL_CACHE"] = tempfile.mkdtemp(prefix="llm4all-test-cache-")  # GGUF copies


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest tests first (`slow(minutes=N)`, then the other slow ones; a stable sort keeps
    the order within each), dealt in turn into one pile per xdist worker. `make test`'s
    `--dist worksteal` gives each worker one contiguous share of the collection (then balances
    by stealing from the queues' ends), so the two longest start at once, one on each worker,
    and the short ones fill in beside them. In file order they came last and ran side by side
    while the other worker idled; sorted but not dealt, they queued on one worker."""

    def minutes(item: pytest.Item) -> float:
        slow = item.get_closest_marker("slow")
        return -1.0 if slow is None else float(slow.kwargs.get("minutes", 0))

    order = sorted(items, key=minutes, reverse=True)
    workers = getattr(config, "workerinput", {}).get("workercount", 1)  # 1 outside xdist
    items[:] = [item for pile in range(workers) for item in order[pile::workers]]


@pytest.fixture(scope="session", autouse=True)
def _prefect_logging_on_real_stderr() -> None:
    """Bind Prefect's console log handler to the real stderr once, before any CliRunner swaps
    sys.stderr for a buffer it closes afterwards (later log lines would hit a closed file)."""
    from prefect.logging.configuration import setup_logging

    setup_logging()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh warehouse home, also exported as LLM4ALL_HOME for the CLI."""
    h = tmp_path / "home"
    monkeypatch.setenv("LLM4ALL_HOME", str(h))
    return h


@pytest.fixture
def catalog(home: Path):
    from warehouse import Catalog

    return Catalog(home)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One local Prefect server for the whole session, on a free loopback port: the API URL.

    Started as `llm4all` starts one for a home; in-process flows and `llm4all` subprocesses
    (serve, run, pipeline) all report to it. Runners poll it every 2 s (PREFECT_RUNNER_POLL_
    FREQUENCY, inherited by subprocesses) so that triggered runs start promptly."""
    from flows.cli.prefect_env import ensure_server, stop_process

    os.environ["PREFECT_RUNNER_POLL_FREQUENCY"] = "2"
    home = tmp_path_factory.mktemp("prefect-server-home")
    info = ensure_server(home)
    try:
        yield info["api_url"]
    finally:
        stop_process(int(info["pid"]))


@pytest.fixture(scope="session")
def prefect_harness(prefect_server: str) -> Iterator[None]:
    """Flow tests: Prefect in this process and in subprocesses points at the session's server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    os.environ["PREFECT_API_URL"] = prefect_server
    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        yield
    os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="session")
def tiny_st_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random BERT wrapped as a sentence-transformers model, saved to a folder."""
    from tests.tiny import make_tiny_sentence_transformer

    return make_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st"))
