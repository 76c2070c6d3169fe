"""Data: scan, split, decode once, cache, batch."""
