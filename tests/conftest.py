"""Shared fixtures. Everything runs offline; only flow tests start a (temporary) Prefect server."""

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
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server for the whole session (~12 s), for flow tests only."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def tiny_st_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random BERT wrapped as a sentence-transformers model, saved to a folder."""
    from tests.tiny import make_tiny_sentence_transformer

    return make_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st"))
