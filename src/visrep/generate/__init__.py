"""Inference only: conditions (class, given image, sampled embeddings) and sampling from a generator run."""
