"""Near-duplicate images found through the classifier's embedding: the same photo in two splits.

Exact (pixel-identical) copies are handled when the data is scanned (visrep.data.duplicates). A
re-encoded, resized or slightly cropped copy differs in every pixel, but a trained CNN maps it almost
onto the original. Every val and test image is compared with its nearest train image (cosine
similarity of the embeddings, which are L2-normalised first); every train image with its nearest
other train image (copies inside train bias training but do not leak).

**The rule.** Let d = 1 − cosine similarity. For each class, the reference is d from every train image
of that class to its nearest *other* train image of the same class: how close two different photos of
one class typically get. A pair is a near-duplicate when

    similarity ≥ ``min_similarity``                                    (absolute floor, default 0.98)
    and  ln d ≤ median(ln d_class) − z · σ_class                       (z default 4)

where the class is the train image's, σ_class = 1.4826 · MAD of ln d_class (a standard deviation
that a few copies inside train cannot inflate), at least ``MIN_LOG_SPREAD``; classes with fewer than
``min_class_images`` train images use the statistics of all train images. In words: the pair is at
least e^(z·σ) times closer than two photos of that class usually are.

**Why this rule.** Measured on flowers17 (680 photos, 32 px, fastcnn 5 epochs, penultimate layer).
The median within-class nearest-neighbour similarity is already 0.969, and 200 of the 672 images that
are not copies have a nearest neighbour above 0.98: a floor alone flags a third of the data, so it only
guards against a weak representation. A quantile rule ("above the 99th percentile of train-train
similarities") flags about 1 % of any data by construction. With 28 train images per class, its
per-class 99th percentile is the class maximum, which is the copy itself when the class holds one
(Snowdrop, TigerLily). On the log-distance scale the copies are far outliers: the three pairs the
archive lists, plus an unlisted crop (Fritillary 0646/0679), sit at z = −14.0, −10.2, −9.3 and −5.7.
The most extreme pair of different photos sits at −2.8. The distance is logged because copies are 8 to
400 times closer than usual, which is a ratio, not a difference; median and MAD are used because the
reference holds the train copies themselves.

The gap between copies and different photos, at the penultimate layer (least outlying copy / most
outlying pair of different photos):

    flowers17, 5 epochs                     −5.7 / −2.8      all 4 found, nothing else
    flowers17, other split seed, 15 epochs  −4.2 / −3.1      all 4 found (Fritillary is the −4.2)
    random shapes 48 → 16 px, tiny CNN      −3.7 / −3.0      a 1 px crop missed at z = 4
    tests/test_near_duplicates.py folder   −11.7 / −4.8      one pair of different photos listed in train

No single z separates every case. z = 4 keeps chance flags rare on a large set (about 3e-5 per image
if ln d were normal) and found every flowers17 copy. On a CIFAR-10 subset (2,700 train and 10,300
val/test images, 59 % accuracy) it flagged 7 test images. By eye, about five were the same photo
(two cars, three deer); one deer and a bird on plain sky were not. At z = 3.5 there were 17 flags,
mostly similar scenes. Earlier layers separate copies worse: stage2 missed the Fritillary crop, and
the stem flagged different photos, so the deepest analysed layer is searched. The list is a set of
candidates to check by eye, which is why it comes with thumbnails.

Costs: one (N_train, N_train) and one (N_val + N_test, N_train) similarity pass, chunked by
:func:`visrep.representations.neighbours.nearest_neighbours` (≈ 128 MB blocks whatever N).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from visrep.representations.neighbours import nearest_neighbours
from visrep.representations.store import EmbeddingSet

# float32 cosines of unit vectors carry ~1e-7·√D of rounding: a smaller distance is noise (and ln needs > 0)
MIN_DISTANCE = 1e-6
# σ of ln d is floored so that a flagged pair is always ≥ e^(z·0.25) (2.7× at z = 4) closer than the class
# median: a class of near-identical distances (synthetic data) would otherwise flag half of its images.
# Measured σ on flowers17: 0.27-0.93 per class after 5 epochs, 0.09-0.31 after 15 (there the floor held for
# most classes, and every copy was still found with nothing else).
MIN_LOG_SPREAD = 0.25
MAD_TO_SD = 1.4826  # MAD × this = standard deviation for a normal distribution
MAX_LISTED = 1000  # pairs kept per list in the JSON (the counts are always complete)
CLOSEST_UNFLAGGED = 3  # val/test pairs just below the threshold, kept to show the margin


@dataclass(frozen=True)
class DuplicateRule:
    min_similarity: float = 0.98  # absolute cosine floor
    z: float = 4.0  # robust standard deviations of ln d below the class median
    min_class_images: int = 10  # below this, a class uses the statistics of all train images

    def describe(self) -> str:
        return (f"cosine ≥ {self.min_similarity} and ln(1 − cosine) at least {self.z:g} robust SD (1.4826·MAD, "
                f"≥ {MIN_LOG_SPREAD}) below the median of the train image's class, where the class statistics are "
                f"those of each train image's distance to its nearest other train image of that class "
                f"(all train images for classes with < {self.min_class_images})")


@dataclass
class Reference:
    """Per class: what two different train photos of that class look like (ln of cosine distance)."""

    median_log: Tensor  # (K,) median ln d
    spread_log: Tensor  # (K,) 1.4826 · MAD of ln d, ≥ MIN_LOG_SPREAD
    counts: Tensor  # (K,) train images with a same-class neighbour
    pooled: list[bool]  # (K,) True: too few images, the statistics of all train images stand in

    def thresholds(self, rule: DuplicateRule) -> Tensor:
        """(K,) the lowest cosine similarity that counts as a near-duplicate, per class of the train image."""
        distance = torch.exp(self.median_log - rule.z * self.spread_log)
        return torch.clamp(1 - distance, min=rule.min_similarity)


def same_class_distances(train: EmbeddingSet) -> Tensor:
    """(N,) cosine distance from each train image to its nearest other train image of its class
    (NaN for a class with one image). One similarity pass per class: Σ n_c² · D work."""
    distances = torch.full((len(train),), float("nan"))
    x = train.flat()
    for label in torch.unique(train.labels):
        rows = torch.nonzero(train.labels == label).flatten()
        if len(rows) > 1:
            _, similarity = nearest_neighbours(x[rows], x[rows], k=1, exclude_self=True)
            distances[rows] = (1 - similarity[:, 0]).clamp_min(MIN_DISTANCE)
    return distances


def class_reference(distances: Tensor, labels: Tensor, num_classes: int, rule: DuplicateRule) -> Reference:
    """Median and robust spread of ln d per class (see the module doc); small classes take the pooled values."""
    logs = torch.log(distances.double())
    known = ~torch.isnan(logs)
    pooled_median, pooled_spread = _robust(logs[known])
    medians, spreads, counts, pooled = [], [], [], []
    for label in range(num_classes):
        values = logs[known & (labels == label)]
        small = len(values) < rule.min_class_images
        median, spread = (pooled_median, pooled_spread) if small else _robust(values)
        medians.append(median)
        spreads.append(spread)
        counts.append(len(values))
        pooled.append(small)
    return Reference(torch.tensor(medians), torch.tensor(spreads), torch.tensor(counts), pooled)


def _robust(values: Tensor) -> tuple[float, float]:
    """(median, 1.4826 · MAD floored at MIN_LOG_SPREAD) of ln distances; (nan, nan) when there are none."""
    if len(values) == 0:
        return math.nan, math.nan
    median = float(values.median())
    return median, max(MAD_TO_SD * float((values - median).abs().median()), MIN_LOG_SPREAD)


def held_out_pairs(held_out: dict[str, EmbeddingSet], train: EmbeddingSet,
                   thresholds: Tensor) -> tuple[list[dict], list[dict]]:
    """(flagged, not flagged) pairs of every val/test image and its nearest train image, most similar first."""
    flagged, other = [], []
    for queries in held_out.values():
        if len(queries) == 0:
            continue
        neighbours, similarity = nearest_neighbours(queries, train, k=1)
        flagged += _pairs(queries, neighbours[:, 0], similarity[:, 0], train, thresholds, flagged=True)
        other += _pairs(queries, neighbours[:, 0], similarity[:, 0], train, thresholds, flagged=False,
                        most=CLOSEST_UNFLAGGED)
    return _most_similar_first(flagged), _most_similar_first(other)[:CLOSEST_UNFLAGGED]


def within_train_pairs(train: EmbeddingSet, thresholds: Tensor) -> list[dict]:
    """Train pairs that pass the rule (each image against its nearest other train image), each pair once."""
    if len(train) < 2:
        return []
    neighbours, similarity = nearest_neighbours(train, train, k=1, exclude_self=True)
    flagged = _pairs(train, neighbours[:, 0], similarity[:, 0], train, thresholds, flagged=True)
    unique = {tuple(sorted((pair["id"], pair["train_id"]))): pair for pair in flagged}  # mutual neighbours: once
    return _most_similar_first(list(unique.values()))


def _most_similar_first(pairs: list[dict]) -> list[dict]:
    return sorted(pairs, key=lambda pair: (-pair["similarity"], pair["split"], pair["index"]))


def _pairs(queries: EmbeddingSet, neighbours: Tensor, similarity: Tensor, train: EmbeddingSet, thresholds: Tensor,
           flagged: bool, most: int | None = None) -> list[dict]:
    """JSON rows for queries whose (nearest train image, similarity) is (or is not) above its class threshold;
    ``most``: only that many, the most similar (not one dict per image of a 50k split)."""
    limit = thresholds[train.labels[neighbours]].to(similarity.dtype)  # (Q,) the train neighbour's class threshold
    passes = similarity >= limit
    rows = torch.nonzero(passes if flagged else ~passes).flatten()
    if most is not None and len(rows) > most:
        rows = rows[similarity[rows].topk(most).indices]
    return [_pair(queries, int(q), train, int(neighbours[q]), float(similarity[q]), float(limit[q])) for q in rows]


def _pair(queries: EmbeddingSet, q: int, train: EmbeddingSet, t: int, similarity: float, threshold: float) -> dict:
    return {"split": queries.split, "index": q, "id": queries.ids[q],
            "class": queries.class_names[int(queries.labels[q])], "train_index": t, "train_id": train.ids[t], "train_class": train.class_names[int(train.labels[t])],
            "similarity": round(similarity, 8), "distance": float(f"{max(1 - similarity, 0.0):.3g}"),
            "threshold": _finite(threshold)}


def find_near_duplicates(train: EmbeddingSet, held_out: dict[str, EmbeddingSet], rule: DuplicateRule) -> dict:
    """The whole search for one layer → a JSON-ready dict (rule, per-class thresholds, pairs and counts)."""
    reference = class_reference(same_class_distances(train), train.labels, len(train.class_names), rule)
    thresholds = reference.thresholds(rule)
    cross, unflagged = held_out_pairs(held_out, train, thresholds)
    inside = within_train_pairs(train, thresholds)
    return {"layer": train.layer, "rule": {"text": rule.describe(), "min_similarity": rule.min_similarity,
                                           "z": rule.z, "min_class_images": rule.min_class_images,
                                           "min_log_spread": MIN_LOG_SPREAD},
            "thresholds": _threshold_table(reference, thresholds, train.class_names),
            "queries": {split: len(queries) for split, queries in held_out.items()},
            "cross_split": {"count": len(cross), "by_split": _count_by_split(cross, held_out),
                            "pairs": cross[:MAX_LISTED]},
            "closest_unflagged": unflagged,
            "within_train": {"count": len(inside), "pairs": inside[:MAX_LISTED]}}


def _count_by_split(pairs: list[dict], held_out: dict[str, EmbeddingSet]) -> dict[str, int]:
    return {split: sum(pair["split"] == split for pair in pairs) for split in held_out}


def _threshold_table(reference: Reference, thresholds: Tensor, class_names: list[str]) -> dict:
    """Per class: the similarity threshold and the statistics it came from (for the JSON)."""
    return {name: {"similarity": _finite(float(thresholds[k])),
                   "median_distance": _finite(math.exp(reference.median_log[k])), "log_spread": _finite(float(reference.spread_log[k])), "train_images": int(reference.counts[k]),
                   "from": "all train images" if reference.pooled[k] else "class"}
            for k, name in enumerate(class_names)}


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)
