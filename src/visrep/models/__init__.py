"""Models: build them by name, and read a classifier's named intermediate features.

``create_model("fastcnn", num_classes=10, in_channels=3, image_size=32)`` returns a
:class:`FeatureClassifier`; ``list_models()`` gives every valid name, including ``tv:<arch>``.
One family per module; importing a family's module registers its names.
"""

from visrep.models import airbench, fastcnn, gan, gan_dcgan, noise_aware, resnet, resnet9, torchvision_family, unet  # noqa: F401  (register their names)
from visrep.models.base import FeatureClassifier
from visrep.models.registry import create_model, list_models, model_kind, register_model, register_prefix

__all__ = ["FeatureClassifier", "create_model", "list_models", "model_kind", "register_model", "register_prefix"]
