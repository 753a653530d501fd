"""factcheck stage: a factual-consistency model trained from the user's own pairs (train-factuality)."""
