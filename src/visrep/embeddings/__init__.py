"""The embedding stage: intermediate-layer representations of a trained classifier.

* extract (``visrep embed <run>``): pooled outputs of any named layer, one safetensors file per
  (layer, split), with labels, sample ids and provenance — :mod:`visrep.embeddings.stage`;
* the condition bank the generators sample embeddings from (class Gaussians, k-means centres), per
  layer beside the embeddings — :mod:`visrep.representations.bank`;
* analysis (which layer transfers best?): kNN, linear probe, silhouette, dimensionality, 2-D maps,
  retrieval grid, one table — ``evaluate`` / ``report``;
* near-duplicate images between splits and inside train, at the deepest analysed layer —
  ``near_duplicates`` (the rule) / ``near_duplicate_outputs`` (JSON, figure, text);
* the Python API for stored and new embeddings — :mod:`visrep.embeddings.api` (re-exported here); the
  generators read the same files through :mod:`visrep.representations`.
"""

from visrep.embeddings.api import EmbeddingSet, embed_images, load_bank, load_embeddings, nearest_neighbours
from visrep.embeddings.evaluate import analyse_embeddings
from visrep.embeddings.stage import embed_classifier_run

__all__ = ["EmbeddingSet", "analyse_embeddings", "embed_classifier_run", "embed_images", "load_bank", "load_embeddings",
           "nearest_neighbours"]
