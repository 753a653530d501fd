"""Settings of the ingest stage (`ingest:` in a config file)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SourceFormat = Literal["auto", "jsonl", "parquet", "csv", "txt", "hf"]


class IngestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    format: SourceFormat = "auto"
    """Reader to use. `auto` picks by suffix (.jsonl/.json/.ndjson[.gz], .parquet, .csv/.tsv[.gz]),
    a folder of .txt files, a folder saved by `datasets.save_to_disk`, or `hf:NAME` for
    `datasets.load_dataset(NAME)`."""
    text_field: str = "text"
    """Field holding the text (the document of a pair)."""
    summary_field: str = "summary"
    """Field holding the summary of a pair; rows without it have none."""
    id_field: str = "id"
    """Field holding a row id; without it the id is `<file name>:<line>`."""
    max_chars: int = Field(200_000, gt=0)
    """Texts longer than this are quarantined (not truncated)."""
    hf_split: str = "train"
    """Split to read from a HF dataset."""
    excerpt_chars: int = Field(200, ge=0)
    """How much of a quarantined line is kept, for a person to read."""
