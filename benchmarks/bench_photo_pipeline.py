"""The photo pipeline on a real photo folder (issue 33): time, generator quality, and the doctor's estimate.

    python benchmarks/bench_photo_pipeline.py --out benchmarks/results/photo_pipeline.json

Runs `visrep pipeline --config configs/pipeline_folder.yaml data.source=<flowers17>` as a user would,
in a fresh folder, after the doctor's estimate of the same config on the same machine (its measured
reference throughput, its timed generator steps). Reads each stage's seconds from its
pipeline-stage.json, the independent evaluator's accuracy on the real test split (the generative
floor's GAN-test: the same evaluator, the same images the scorer holds out) and each generator's
GAN-test by that evaluator. Verdicts, computed here: the whole pipeline within 30 min; each
generator's GAN-test ≥ 0.8 × the evaluator's real-test accuracy; the doctor's estimate within 2× of
the measured time, for the whole pipeline and for each generator stage. The report is then read in
headless Chromium (benchmarks/screenshot_report.py) and small screenshots are written to
benchmarks/figures/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import commit, machine_line, report_json, unpacked  # noqa: E402
from screenshot_report import capture  # noqa: E402
from verdicts import GAN_TEST_SHARE, photo_pipeline_checks, photo_pipeline_met  # noqa: E402

from visrep.doctor.classifier_cost import measure_throughput  # noqa: E402
from visrep.doctor.pipeline_cost import estimate_pipeline  # noqa: E402
from visrep.hardware.precision import resolve_precision  # noqa: E402
from visrep.hardware.threads import configure_process  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "pipeline_folder.yaml"
FIGURES = REPO / "benchmarks" / "figures"
GENERATORS = ("gan", "diffusion")
SECTIONS = ("summary", "generated-gan", "generated-diffusion")


def doctor_estimate(overrides: list[str]) -> dict:
    configure_process()
    precision = resolve_precision("auto", "cpu").precision
    return estimate_pipeline(CONFIG, measure_throughput(precision), overrides)


def run_pipeline(overrides: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "visrep", "pipeline", "--config", str(CONFIG), *overrides], check=True,
                   cwd=REPO)
    return time.perf_counter() - started


def read_outcome(root: Path) -> dict:
    stages = {}
    for marker in sorted(root.glob("*/pipeline-stage.json")):
        stages[marker.parent.name] = json.loads(marker.read_text())["seconds"]
    scores = {}
    for name in GENERATORS:
        metrics = json.loads((root / "generative" / name / "metrics.json").read_text())
        scores[name] = {"gan_test": metrics["model"]["gan_test"]["accuracy"],
                        "evaluator_real_test": metrics["floor"]["gan_test"]["accuracy"],
                        "n": metrics["model"]["gan_test"]["n"]}
    return {"stages": stages, "scores": scores}


def results_json(folder: str, wall: float, outcome: dict, estimate: dict, checks: dict, shots: list[Path]) -> dict:
    scores = outcome["scores"]
    met = photo_pipeline_met(checks)
    headline = (f"{folder}: the photo pipeline took {wall / 60:.1f} min (doctor's estimate {estimate['seconds'] / 60:.1f} "
                f"min); GAN-test " + ", ".join(f"{name} {s['gan_test']:.3f}" for name, s in scores.items())
                + f" vs the evaluator's real-test {scores['gan']['evaluator_real_test']:.3f} "
                f"(needed ≥ {GAN_TEST_SHARE * scores['gan']['evaluator_real_test']:.3f})")
    stage_rows = [{"stage": stage, "measured_seconds": round(outcome["stages"].get(stage, 0.0), 1),
                   "estimated_seconds": round(estimate["stages"].get(stage, 0.0), 1)} for stage in estimate["stages"]]
    stage_rows.append({"stage": "whole pipeline (wall clock)", "measured_seconds": round(wall, 1),
                       "estimated_seconds": round(estimate["seconds"], 1), "_strong": True})
    score_rows = [{"generator": name, "gan_test": round(s["gan_test"], 4),
                   "evaluator_real_test": round(s["evaluator_real_test"], 4),
                   "share": round(s["gan_test"] / s["evaluator_real_test"], 3), "n": s["n"]} for name, s in scores.items()]
    return {"goal": "Photo pipeline", "issue": 33, "order": 18,
            "target": "visrep pipeline with the photo recipe ≤ 30 min on this 2-core CPU; each generator's GAN-test "
                      "by the independent evaluator ≥ 0.8 × the evaluator's real-test accuracy; visrep doctor's "
                      "estimate within 2× of the measured run",
            "met": met, "headline": headline, "verdicts": checks,
            "host": machine_line(), "date": time.strftime("%Y-%m-%d"),
            "command": "python benchmarks/bench_photo_pipeline.py --out benchmarks/results/photo_pipeline.json",
            "commit": commit(), "seeds": ["classifier 0", "evaluator 1", "generators 0 (the recipes')"],
            "setup": __doc__.split("\n\n", 2)[2].strip().replace("\n", " "),
            "tables": [{"title": "Time per stage: measured vs visrep doctor",
                        "columns": [{"key": k, "label": k.replace("_", " ")} for k in
                                    ("stage", "measured_seconds", "estimated_seconds")], "rows": stage_rows},
                       {"title": "Generators scored by the independent evaluator (test split)",
                        "columns": [{"key": k, "label": k.replace("_", " ")} for k in
                                    ("generator", "gan_test", "evaluator_real_test", "share", "n")],
                        "rows": score_rows}],
            "images": [{"path": str(path.relative_to(REPO / "benchmarks")), "alt": f"report section {section}",
                        "caption": f"The {folder} photo pipeline's report, section '{section}', as headless Chromium "
                                   "shows it (python benchmarks/screenshot_report.py)"}
                       for path, section in zip(shots, SECTIONS)],
            "estimate_notes": estimate["notes"], "history": ["notes/2026-12-07-photo-folders.md"], "notes": []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default="flowers17")
    parser.add_argument("--root", type=Path, default=Path.home() / ".cache" / "visrep-bench" / "photo-pipeline")
    parser.add_argument("--out", help="write the results JSON here")
    args = parser.parse_args()
    name = args.folder
    if (args.root / name).exists():  # a fresh run every time: a finished one would be skipped stage by stage
        shutil.rmtree(args.root / name)
    overrides = [f"data.source={unpacked(args.folder)}", f"run.root={args.root}", f"run.name={name}"]
    estimate = doctor_estimate(overrides)
    print(f"doctor's estimate: {estimate['seconds'] / 60:.1f} min {estimate['stages']}", flush=True)
    wall = run_pipeline(overrides)
    outcome = read_outcome(args.root / name)
    checks = photo_pipeline_checks(wall, outcome, estimate, GENERATORS)
    shots = capture(args.root / name / "report" / "report.html", list(SECTIONS), str(FIGURES / f"{name}-photo-report"))
    report_json(results_json(name, wall, outcome, estimate, checks, shots), args.out)


if __name__ == "__main__":
    main()
