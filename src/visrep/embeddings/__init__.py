"""The embedding stage: intermediate-layer representations of a trained classifier.

* extract (``visrep embed <run>``): pooled outputs of any named layer, one safetensors file per
  (layer, split), with labels, sample ids and provenance — :mod:`visrep.embeddings.stage`;
* statistics for the generators: per-class mean/covariance and k-means centres — ``stats``;
* analysis (which layer transfers best?): kNN, linear probe, silhouette, dimensionality, 2-D maps,
  retrieval grid, one table — ``evaluate`` / ``report``;
* near-duplicate images between splits and inside train, at the deepest analysed layer —
  ``near_duplicates`` (the rule) / ``near_duplicate_outputs`` (JSON, figure, text);
* the API used by later stages — :mod:`visrep.embeddings.api` (re-exported here).
"""

from visrep.embeddings.api import (Embedder, embed_images, load_class_stats, load_embeddings, load_kmeans,
                                   nearest_neighbours)
from visrep.embeddings.evaluate import analyse_embeddings
from visrep.embeddings.stage import embed_classifier_run
from visrep.embeddings.stats import ClassStats, KMeansCentres
from visrep.representations.store import EmbeddingSet

__all__ = ["ClassStats", "Embedder", "EmbeddingSet", "KMeansCentres", "analyse_embeddings", "embed_classifier_run",
           "embed_images", "load_class_stats", "load_embeddings", "load_kmeans", "nearest_neighbours"]
