"""Stage logic: plain functions that do the work, each with a thin Prefect `@task` wrapper."""
