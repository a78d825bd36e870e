"""Knowledge distillation: DistilBERT and TinyBERT students of a teacher (seed 002, 004)."""
