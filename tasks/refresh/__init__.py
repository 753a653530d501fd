"""refresh stage."""
