"""`python -m flows.cli` (and `accelerate launch -m flows.cli ...`) runs the CLI."""

from flows.cli import main

main()
