"""The main job, end to end, from one config (grows stage by stage).

Today: data → classifier training → classifier evaluation on the test split.
"""

from __future__ import annotations

from visrep.evaluation.classifier_eval import evaluate_classifier, format_metrics
from visrep.training.classifier import train_classifier


def run_demo(cfg) -> int:
    run_path = train_classifier(cfg)
    for split in ("val", "test"):
        metrics = evaluate_classifier(run_path, split)
        print(format_metrics(metrics))
    print(f"run directory: {run_path}")
    return 0
