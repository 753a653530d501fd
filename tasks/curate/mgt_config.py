"""Settings of the machine-generated-text score (`dedup.mgt` in a config file)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MgtConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = False
    """Score every row for machine-written text (`method`; one forward pass of the scoring LM
    per text; off by default because it is the costliest filter)."""
    model: str | None = None
    """Scoring LM (folder, .gguf, pkg:NAME or HF id); default the teacher. With `performer` set it
    is Binoculars' observer."""
    performer: str | None = None
    """A second LM with the same tokenizer (e.g. the base version of an instruct `model`, or a
    student distilled from it): Binoculars then compares the two (-(log perplexity under the
    performer / cross-perplexity)). None: one LM."""
    method: (
        Literal[
            "fast_detectgpt",
            "binoculars",
            "log_rank",
            "log_prob",
            "entropy",
            "binoculars_swapped",
            "performer_log_prob",
            "performer_fast_detectgpt",
            "stack",
        ]
        | None
    ) = None
    """What `mgt_score` is (higher = more machine-like for each). None: `binoculars` (Hans et
    al. 2024; with one LM its cross-perplexity is the model's own entropy: mean log-probability
    over mean entropy). `fast_detectgpt`: the analytic sampling discrepancy (Bao et al. 2024).
    `log_rank`: minus the mean log-rank of the text's tokens. `log_prob`: mean token
    log-probability (the trivial baseline). `entropy`: minus the mean predictive entropy. The
    `performer_*` and `binoculars_swapped` ones need a performer. `stack`: a logistic model
    over them and the word count (`stacker`), whose probability of machine text is the
    score. `python -m bench.mgt` measures each on held-out text of the scorer's own model and
    of another (ChatGPT)."""
    stacker: str | None = None
    """With method `stack`: the stacker's JSON file (`python -m bench.mgt --write-stacker FILE`
    fits one for a scoring LM and prefix; it only holds for those)."""
    prefix: str = "auto"
    """Text put before every scored text and not scored itself. "auto": the scoring model's
    assistant header when its tokenizer has a chat template ("<|im_start|>assistant\n" for
    SmolLM2), so an instruct model scores each text as its own reply would be (chat models'
    text is likelier there); nothing for a base model. "": the text alone (its first token
    is then not scored). A threshold holds only for the prefix it was calibrated with."""
    max_tokens: int = Field(256, ge=2)
    """Tokens of each text that are scored."""
    min_tokens: int = Field(16, ge=2)
    """Texts with fewer tokens get no mgt_score (null): on a handful of tokens the statistic is
    noise, and a null score never marks a row."""
    batch_size: int = Field(8, ge=1)
    """Texts per forward pass."""
    threshold: float | None = None
    """Rows scoring above this are marked `machine_generated`; None: score only (set it with
    `llm4all calibrate` on human-written text)."""
    action: Literal["drop", "downweight"] = "drop"
    """What happens to a row above the threshold: drop (reason `machine_generated`), or downweight
    (kept, with `sample_weight` = `weight`; the tokens stage includes it with that probability)."""
    weight: float = Field(0.25, ge=0.0, le=1.0)
    """sample_weight of a machine-like row under action=downweight (others: 1)."""
    max_share: float | None = Field(None, ge=0.0, le=1.0)
    """At most this share of the kept rows of a snapshot may be machine-like (score above the
    threshold); the excess highest-scoring rows are dropped with reason `mgt_share_cap`. The guard
    against training on model output; needs `threshold`."""
