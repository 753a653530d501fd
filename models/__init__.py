"""The LM side: loading, students, distillation losses, logit cache format, quantization."""
