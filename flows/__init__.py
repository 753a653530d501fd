"""Prefect flows (thin wiring of tasks and gates), deployments and the `llm4all` CLI."""
