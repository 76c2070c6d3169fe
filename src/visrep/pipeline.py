"""The main job, end to end, from one config (grows stage by stage).

Today: data → classifier training → classifier evaluation → embeddings of every layer + their analysis.
"""

from __future__ import annotations

from visrep.evaluation.classifier_eval import evaluate_classifier, format_metrics, trained_without_val
from visrep.training.classifier import train_classifier


def run_demo(cfg) -> int:
    run_path = train_classifier(cfg)
    for split in ("test",) if trained_without_val(run_path) else ("val", "test"):
        metrics = evaluate_classifier(run_path, split)
        print(format_metrics(metrics))
    _embed_every_layer(run_path, cfg.eval.weights)
    print(f"run directory: {run_path}")
    return 0


def _embed_every_layer(run_path, weights: str) -> None:
    """Embeddings of every feature layer (of the evaluated ``weights``), their statistics and the analysis table."""
    from visrep.config import EmbedConfig, load_config
    from visrep.embeddings import embed_classifier_run
    from visrep.embeddings.report import format_table
    from visrep.embeddings.store import read_json

    out = embed_classifier_run(run_path, load_config(overrides=["embed.layers=[all]", f"embed.weights={weights}"],
                                                     schema=EmbedConfig))
    print(format_table(read_json(out / "analysis.json")))
