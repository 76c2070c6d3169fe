"""The main job, end to end, from one config (grows stage by stage).

Today: data → classifier training → classifier evaluation → embeddings of every layer + their analysis.
"""

from __future__ import annotations

from visrep.evaluation.classifier_eval import evaluate_classifier, format_metrics
from visrep.training.classifier import train_classifier


def run_demo(cfg) -> int:
    run_path = train_classifier(cfg)
    for split in ("val", "test"):
        metrics = evaluate_classifier(run_path, split)
        print(format_metrics(metrics))
    _embed_every_layer(run_path)
    print(f"run directory: {run_path}")
    return 0


def _embed_every_layer(run_path) -> None:
    """Embeddings of every feature layer, their statistics and the per-layer analysis table."""
    from visrep.config import EmbedConfig, load_config
    from visrep.embeddings import embed_classifier_run
    from visrep.embeddings.report import format_table
    from visrep.embeddings.store import read_json

    out = embed_classifier_run(run_path, load_config(overrides=["embed.layers=[all]"], schema=EmbedConfig))
    print(format_table(read_json(out / "analysis.json")))
