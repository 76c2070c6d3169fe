"""Classifier models: build them by name, and read their named intermediate features.

``create_model("fastcnn", num_classes=10, in_channels=3, image_size=32)`` returns a
:class:`FeatureClassifier`; ``list_models()`` gives every valid name, including ``tv:<arch>``.
"""

from visrep.models.classifier import FeatureClassifier  # importing classifier registers the built-in models
from visrep.models import airbench  # noqa: F401  (registers "airbench")
from visrep.models.registry import create_model, list_models, register_model

__all__ = ["FeatureClassifier", "create_model", "list_models", "register_model"]
