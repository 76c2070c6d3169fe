"""Seconds saved by passing on what the pipeline already holds (issue 34), old path beside new, one sitting.

Three places, each timed old then new, alternating, median of --repeats:

* a generator's start in embedding mode: embedding the training split and fitting the condition bank
  (what every GAN/diffusion run did before) vs reading what the embeddings stage stored for the same
  weights and data (representations/train_embeddings.py);
* the evaluator stage's reporting: the test split predicted for evaluator.json and again for eval-test/
  (before) vs once for both (evaluator_test_report);
* the report's guidance sweep: the diffusion run loaded once per scale (before) vs once, the networks
  shared between scales (with_guidance). Sampling itself is the same in both and not timed.

The classifier is a trained CIFAR-10 fastcnn run (--classifier; default: bench_transfer.py's cached
source run), copied to a temporary folder so that nothing is written into it; the diffusion run is a
tiny one trained here on digits in seconds.

    python benchmarks/bench_representation_reuse.py --out benchmarks/results/representation_reuse.json
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import REPO, commit, machine_line, report_json

DEFAULT_CLASSIFIER = Path.home() / ".cache" / "visrep-bench" / "transfer" / "cifar10-fastcnn"
SCALES = (0.0, 1.0, 2.0, 4.0)  # the report's default guidance sweep
MIN_SAVED_SECONDS = 0.0  # met: at every place the new path saves more than this (median old - median new, to the ms)


def seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def alternate(old, new, repeats: int) -> dict:
    """Median seconds of old and new, timed in turn (old, new, old, new, ...)."""
    times = {"old": [], "new": []}
    for _ in range(repeats):
        times["old"].append(seconds(old))
        times["new"].append(seconds(new))
    return old_vs_new(times["old"], times["new"])


def old_vs_new(old_times: list[float], new_times: list[float]) -> dict:
    """Median seconds of each path, the seconds saved and the speed-up (old ÷ new; None when new took 0)."""
    old_s, new_s = statistics.median(old_times), statistics.median(new_times)
    return {"old_seconds": round(old_s, 3), "new_seconds": round(new_s, 3), "saved_seconds": round(old_s - new_s, 3),
            "speedup": round(old_s / new_s, 2) if new_s > 0 else None, "runs": len(old_times)}


def reuse_met(rows: list[dict]) -> bool:
    """Met when every place saves more than MIN_SAVED_SECONDS (as rounded in its row)."""
    return all(row["saved_seconds"] > MIN_SAVED_SECONDS for row in rows)


def generator_start(run: Path, data, repeats: int) -> dict:
    """Embedding the training split + fitting the bank, vs reading the embeddings stage's files."""
    from visrep.config import EmbedConfig, load_config
    from visrep.embeddings import embed_classifier_run
    from visrep.inference.encoder import FrozenEncoder
    from visrep.representations.bank import ConditionBank
    from visrep.representations.train_embeddings import condition_bank, extract_train_set, train_embeddings

    embed_classifier_run(run, load_config(overrides=["embed.layers=[penultimate]", "embed.splits=[train]",
                                                     "analysis.enabled=false"], schema=EmbedConfig),
                         progress=False, data=data)
    encoder = FrozenEncoder.from_run(run, "best")
    labels, classes, root = data.splits["train"].labels, len(data.class_names), run / "embeddings"

    def computed():
        fresh = extract_train_set(run, "best", encoder, data, "penultimate")
        ConditionBank.fit(torch_unit(fresh.flat()), labels, classes, 100, 0)

    def read():
        found = train_embeddings(run, "best", encoder, data, "penultimate", root)
        assert found.computed is None, "the stored embeddings were not taken"
        condition_bank(found, labels, classes, 100, root, "penultimate")
    return {"what": f"generator start, embedding mode ({len(labels):,} training images, penultimate)",
            **alternate(computed, read, repeats)}


def torch_unit(features):
    import torch.nn.functional as F

    return F.normalize(features.float(), dim=1)


def evaluator_reporting(run: Path, data, repeats: int) -> dict:
    """The test split predicted twice (record, then report) vs once for both."""
    from visrep.evaluation.classifier_eval import evaluate_classifier, evaluator_test_report
    from visrep.training.evaluator import test_split_accuracy

    def twice():
        test_split_accuracy(run, "best", data)
        evaluate_classifier(run, "test", data=data)

    def once():
        evaluator_test_report(run, "best", data)
    return {"what": f"evaluator stage: test accuracy + report ({len(data.splits['test']):,} test images)",
            **alternate(twice, once, repeats)}


def guidance_sweep(diffusion_run: Path, repeats: int) -> dict:
    """The diffusion run loaded once per guidance scale vs once, shared."""
    from visrep.generate.generator_run import load_generator_run, with_guidance

    def per_scale():
        for scale in SCALES:
            load_generator_run(diffusion_run, sampling={"guidance": scale})

    def shared():
        run = load_generator_run(diffusion_run)
        for scale in SCALES:
            with_guidance(run, scale)
    return {"what": f"report: guidance sweep over {len(SCALES)} scales (loading only)",
            **alternate(per_scale, shared, repeats)}


def tiny_diffusion_run(root: Path) -> Path:
    from visrep.config import ClassifierConfig, DiffusionConfig, load_config
    from visrep.training.classifier import train_classifier
    from visrep.training.diffusion import train_diffusion

    configs = REPO / "configs"
    base = [f"run.root={root}", f"data.cache_dir={root / 'cache'}"]
    classifier = train_classifier(load_config(configs / "tiny.yaml", base + ["run.name=clf"], ClassifierConfig),
                                  progress=False)
    return train_diffusion(load_config(configs / "diffusion_tiny.yaml", base + [
        "run.name=diff", f"diffusion.conditioning_run={classifier}", "diffusion.final_samples=0"], DiffusionConfig),
        progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classifier", default=str(DEFAULT_CLASSIFIER), help="a trained classifier run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()
    from visrep.data.prepare import prepare_data
    from visrep.inference.loading import load_classifier

    source = Path(args.classifier).expanduser()
    if not (source / "best.safetensors").is_file():
        raise SystemExit(f"no trained classifier run at {source}: run benchmarks/bench_transfer.py first, or pass "
                         "--classifier")
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "classifier"
        shutil.copytree(source, run, ignore=shutil.ignore_patterns("checkpoints", "embeddings", "eval-*"))
        data = prepare_data(load_classifier(run, "best")[1].data, progress=False)
        rows = [generator_start(run, data, args.repeats), evaluator_reporting(run, data, args.repeats),
                guidance_sweep(tiny_diffusion_run(Path(tmp) / "tiny"), args.repeats)]
    results = {
        "goal": "One representation path: seconds saved by reusing what the pipeline holds (issue 34)",
        "issue": 34, "order": 97, "met": reuse_met(rows),
        "target": "a pipeline that reuses the embeddings stage is measurably faster than before, seconds saved "
                  "per stage",
        "headline": "; ".join(f"{row['what'].split(' (')[0]}: {row['old_seconds']:.2f} → {row['new_seconds']:.2f} s"
                              for row in rows),
        "host": machine_line(), "date": time.strftime("%Y-%m-%d"), "commit": commit(),
        "source": "benchmarks/bench_representation_reuse.py: old and new paths timed in turn in one process",
        "command": "python benchmarks/bench_representation_reuse.py --out benchmarks/results/representation_reuse.json",
        "setup": f"classifier: {source.name} (a CIFAR-10 fastcnn, 32 px); median of {args.repeats} alternating runs",
        "tables": [{"title": "Old path vs new path, one sitting",
                    "columns": [{"key": "what", "label": "where"},
                                {"key": "old_seconds", "label": "before", "unit": " s"},
                                {"key": "new_seconds", "label": "now", "unit": " s"},
                                {"key": "saved_seconds", "label": "saved", "unit": " s"},
                                {"key": "speedup", "label": "speed-up", "unit": "×"}],
                    "rows": rows}],
    }
    report_json(results, args.out)


if __name__ == "__main__":
    main()
