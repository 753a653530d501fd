"""What curation has left to do, from the catalog alone (no Prefect, no model): `llm4all
curate` answers "nothing to curate" from it without starting a flow run."""

from __future__ import annotations

from warehouse import Catalog, DatasetRef


def pending_raw_versions(catalog: Catalog, dataset: str) -> list[DatasetRef]:
    """Raw versions that passed their gate and have no curated version (passed or pending)."""
    done = {
        v.meta.get("raw_version")
        for v in catalog.versions("curated", dataset)
        if v.gate_passed is not False
    }
    return [
        v.ref
        for v in catalog.versions("raw", dataset)
        if v.gate_passed and v.ref.version not in done
    ]


def nothing_to_curate(catalog: Catalog, dataset: str) -> bool:
    """No raw version waits for curation and no curated version waits for its gate."""
    pending_gate = any(v.gate_passed is None for v in catalog.versions("curated", dataset))
    return not pending_gate and not pending_raw_versions(catalog, dataset)
