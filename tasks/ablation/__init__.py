"""Does curation pay? The curation ablation: a noisy corpus with known noise, students trained
on the raw rows vs the curated rows (and on the clean rows, the oracle) and what each costs and
learns. `run.curation_effect` runs it (`llm4all demo --ablation`, `python -m
bench.curation_effect`)."""
