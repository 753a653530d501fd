"""Does curation pay? The curation ablation: a noisy corpus with known noise, two students
(raw rows vs curated rows) and what each costs and learns. `run.curation_effect` runs it
(`llm4all demo --ablation`, `python -m bench.curation_effect`)."""
