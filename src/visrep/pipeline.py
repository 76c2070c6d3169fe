"""The main job, end to end, from one config (grows stage by stage).

Today: data → classifier training → classifier evaluation → embeddings of every layer + their analysis.
The data is prepared once and handed to every stage.
"""

from __future__ import annotations

from visrep.data.prepare import PreparedData, prepare_data
from visrep.evaluation.classifier_eval import evaluate_classifier, format_metrics
from visrep.inference.loading import trained_without_val
from visrep.training.classifier import train_classifier


def run_demo(cfg) -> int:
    data = prepare_data(cfg.data)
    run_path = train_classifier(cfg, data=data)
    for split in ("test",) if trained_without_val(run_path) else ("val", "test"):
        metrics = evaluate_classifier(run_path, split, data=data)
        print(format_metrics(metrics))
    _embed_every_layer(run_path, cfg.eval.weights, data)
    print(f"run directory: {run_path}")
    return 0


def _embed_every_layer(run_path, weights: str, data: PreparedData) -> None:
    """Embeddings of every feature layer (of the evaluated ``weights``), their statistics and the analysis table."""
    from visrep.config import EmbedConfig, load_config
    from visrep.embeddings import embed_classifier_run
    from visrep.embeddings.report import format_table
    from visrep.embeddings.store import read_json

    out = embed_classifier_run(run_path, load_config(overrides=["embed.layers=[all]", f"embed.weights={weights}"],
                                                     schema=EmbedConfig), data=data)
    print(format_table(read_json(out / "analysis.json")))
