"""logits stage."""
