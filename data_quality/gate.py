"""`gate(stage, ref)`: validate a snapshot with its stage's GX suite; raise if it fails.

A failed gate marks the version `gate_passed = false` (so nothing downstream reads it), records
the failing expectations in the catalog, publishes them as a Prefect table artifact when called
inside a flow run, and raises `GateFailed` with one line per failing expectation.

Each gate's validation results are also rendered as Great Expectations Data Docs (a static HTML
site per gate under `<home>/data_docs/<stage>/<target>/`), linked from the artifact.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_quality.gate_config import GatesConfig
from data_quality.suites import SUITES, Check
from warehouse.names import artifact_key

if TYPE_CHECKING:
    from warehouse import Catalog, DatasetRef

log = logging.getLogger(__name__)


@dataclass
class ExpectationOutcome:
    batch: str
    expectation: str
    column: str | None
    kwargs: dict[str, Any]
    success: bool
    element_count: int | None
    unexpected_count: int | None
    observed: Any = None
    examples: list[Any] = field(default_factory=list)

    def line(self) -> str:
        bounds = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        what = f"{self.expectation}({bounds})"
        if self.unexpected_count is not None and self.element_count:
            what += f": {self.unexpected_count} of {self.element_count} rows fail"
        if self.examples:
            what += f", e.g. {', '.join(map(str, self.examples))}"
        return f"[{self.batch}] {what}"


@dataclass
class GateResult:
    stage: str
    target: str  # the snapshot's key, or the ingest run when no snapshot was made
    passed: bool
    outcomes: list[ExpectationOutcome]
    seconds: float
    data_docs: str | None = None  # index.html of the gate's Data Docs, when rendered

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "target": self.target,
            "passed": self.passed,
            "seconds": self.seconds,
            "data_docs": self.data_docs,
            "expectations": [asdict(o) for o in self.outcomes],
        }


class GateFailed(RuntimeError):
    """A data-quality gate failed; `.result` holds every expectation's outcome."""

    def __init__(self, result: GateResult) -> None:
        self.result = result
        self.stage_result: dict[str, Any] | None = None  # the stage's own report, if attached
        lines = "\n".join(f"  - {o.line()}" for o in result.failures)
        super().__init__(f"{result.stage} gate failed for {result.target}:\n{lines}")


def gate(
    stage: str,
    ref: DatasetRef | None,
    catalog: Catalog,
    cfg: GatesConfig | None = None,
    *,
    run: dict[str, Any] | None = None,
) -> GateResult:
    """Validate `ref` (and, for `raw`, the ingest run that made it); raise GateFailed on failure."""
    cfg = cfg or GatesConfig()
    if stage not in SUITES:
        raise ValueError(f"no gate suite for stage {stage!r}")
    if ref is None and run is None:
        raise ValueError("gate needs a snapshot or an ingest run to check")
    started = time.monotonic()
    checks = SUITES[stage](ref, catalog, cfg, run)
    target = ref.key if ref else run.get("target") or f"ingest run {run['run_id']}"
    docs = catalog.home / "data_docs" / stage / artifact_key(target) if cfg.data_docs else None
    ctx = _gx_context(docs) if checks else None  # one context per gate: its checks differ by name
    outcomes = [o for check in checks for o in _validate(ctx, check, cfg.examples, stage)]
    result = GateResult(
        stage, target, all(o.success for o in outcomes), outcomes, time.monotonic() - started
    )
    if ctx is not None and docs is not None:
        result.data_docs = _build_docs(ctx, docs)
    if ref is not None:
        report = None if result.passed else {"failures": [asdict(o) for o in result.failures]}
        with catalog.writing():
            catalog.set_gate(ref, result.passed, report)
    _publish_artifact(result)
    if not result.passed:
        raise GateFailed(result)
    log.info("%s gate passed for %s (%d expectations)", stage, target, len(outcomes))
    return result


def _gx_context(docs: Path | None) -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX logs every ephemeral context it makes at INFO (and pins that module's logger to INFO);
    # one gate makes several.
    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.WARNING)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    if docs is not None:  # the results stay in memory; the site is rendered from them
        ctx.add_data_docs_site(
            DOCS_SITE,
            {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    return ctx


DOCS_SITE = "gate"


def _build_docs(ctx: Any, docs: Path) -> str | None:
    """Render the gate's Data Docs; their index.html (None if rendering failed: the docs are
    for people, never a reason to fail a gate)."""
    import shutil

    shutil.rmtree(docs, ignore_errors=True)  # this gate's latest run only
    try:
        results = ctx.validation_results_store.list_keys()  # the pages of this gate only
        ctx.build_data_docs(site_names=[DOCS_SITE], resource_identifiers=results)
    except Exception as e:
        log.warning("could not render the Data Docs of this gate: %s", e)
        return None
    index = docs / "index.html"
    return str(index) if index.exists() else None


def _validate(ctx: Any, check: Check, n_examples: int, stage: str) -> list[ExpectationOutcome]:
    import great_expectations as gx

    name = f"{stage}-{check.batch}"
    batch_definition = (
        ctx.data_sources.add_pandas(name)
        .add_dataframe_asset(check.batch)
        .add_batch_definition_whole_dataframe(check.batch)
    )
    suite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=check.expectations))
    result_format: dict[str, Any] = {
        "result_format": "COMPLETE" if check.id_column else "SUMMARY",
        "partial_unexpected_count": n_examples,
    }
    if check.id_column:
        result_format["unexpected_index_column_names"] = [check.id_column]
    # A validation definition stores its result in the context, where Data Docs find it.
    definition = ctx.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch_definition, suite=suite)
    )
    res = definition.run(batch_parameters={"dataframe": check.frame}, result_format=result_format)
    outcomes = []
    for r in res.results:
        conf = r.expectation_config
        kwargs = {
            k: v
            for k, v in conf.kwargs.items()
            if k not in ("batch_id", "column") and v is not None
        }
        detail = r.result or {}
        examples: list[Any] = []
        column = conf.kwargs.get("column")
        if not r.success and check.id_column:
            for row in (detail.get("unexpected_index_list") or [])[:n_examples]:
                examples.append(_example(row, check.id_column, column))
        if r.exception_info and r.exception_info.get("raised_exception"):
            kwargs["error"] = r.exception_info.get("exception_message")
        outcomes.append(
            ExpectationOutcome(
                batch=check.batch,
                expectation=conf.type,
                column=column,
                kwargs={"column": conf.kwargs.get("column"), **kwargs},
                success=bool(r.success),
                element_count=detail.get("element_count"),
                unexpected_count=detail.get("unexpected_count"),
                observed=detail.get("observed_value"),
                examples=examples,
            )
        )
    return outcomes


def _example(row: Any, id_column: str, column: str | None) -> str:
    """`<id>` for a failing row, with the offending value when it is not the id itself."""
    if not isinstance(row, dict):
        return str(row)
    name = str(row.get(id_column))
    if column and column != id_column and column in row:
        value = row[column]
        value = round(value, 4) if isinstance(value, float) else value
        name += f" ({column}={value})"
    return name


def _publish_artifact(result: GateResult) -> None:
    """A table artifact in the Prefect UI, when we run inside a flow or task run."""
    try:
        from prefect.artifacts import create_table_artifact
        from prefect.context import FlowRunContext, TaskRunContext
    except ImportError:  # pragma: no cover - prefect is a dependency
        return
    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return
    rows = [
        {
            "batch": o.batch,
            "expectation": o.expectation,
            "column": o.column or "",
            "passed": "yes" if o.success else "NO",
            "failing rows": "" if o.unexpected_count is None else o.unexpected_count,
            "of": "" if o.element_count is None else o.element_count,
            "examples": ", ".join(map(str, o.examples)),
        }
        for o in result.outcomes
    ]
    verdict = "passed" if result.passed else "FAILED"
    description = f"{result.stage} gate {verdict}: {result.target}"
    if result.data_docs:
        description += f" — [Data Docs]({Path(result.data_docs).as_uri()})"
    create_table_artifact(
        table=rows, key=artifact_key(f"gate-{result.target}"), description=description
    )
