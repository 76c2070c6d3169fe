"""Inference on trained networks: autocast, batched prediction, loading a classifier run, the frozen
differentiable encoder. Below the training parts and stages; imports only data, models and the base.
"""
