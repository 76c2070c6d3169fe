"""Verdicts (met / not met) and ratios of the bench scripts that import torch or visrep at module level,
as small pure functions with their thresholds named (issue 36, item 4: verdicts computed, never typed).

Standard library only: tests/test_bench_verdicts.py feeds these functions made-up figures on both sides
of each threshold without importing torch, visrep or a peer library. Each script calls its section here
when it builds its results JSON. Scripts whose own imports are light keep their verdicts beside their
other code: bench_gan.py (ratios, goal_met), bench_diffusion.py (_ratio, versus, comparison_met),
bench_representation_reuse.py (old_vs_new, reuse_met), time_test_suite.py (suite_met) and
compare_pipelines.py (row_for).
"""

from __future__ import annotations

import statistics

# ---- bench_sampling_speed.py: diffusion sampling throughput beside denoising-diffusion-pytorch -------------
SAMPLING_SPEED_RATIO = 20  # ours ≥ 20× the baseline's images/s at 20 guided steps ...
SAMPLING_IMAGES_PER_S = 50  # ... and ≥ 50 images/s (the aim), both on one of our rows


def sampling_speed_rows(rates: dict[str, list[float]], baseline: str) -> list[dict]:
    """One row per model, in ``rates``' order: the median images/s over the repeats, each repeat, and the
    median ÷ the ``baseline`` model's median (rounded to 2 places, as the table shows them)."""
    base = statistics.median(rates[baseline])
    return [{"model": name, "images_per_s": round(statistics.median(values), 2),
             "runs": [round(v, 2) for v in values], "ratio": round(statistics.median(values) / base, 2)}
            for name, values in rates.items()]


def sampling_speed_met(ours: list[dict]) -> bool:
    """Met when one of our rows (``sampling_speed_rows`` less the baseline's) reaches both the ratio and
    the images/s, as rounded in the table."""
    return any(r["ratio"] >= SAMPLING_SPEED_RATIO and r["images_per_s"] >= SAMPLING_IMAGES_PER_S for r in ours)


# ---- bench_photo_pipeline.py: the photo pipeline's time, generator quality and the doctor's estimate ------
PIPELINE_BUDGET_SECONDS = 30 * 60  # the whole pipeline within 30 min (wall clock)
GAN_TEST_SHARE = 0.8  # each generator's GAN-test ≥ 0.8 × the evaluator's accuracy on the real test split
ESTIMATE_FACTOR = 2.0  # the doctor's estimate within 2× of the measured time, either way


def photo_pipeline_checks(wall: float, outcome: dict, estimate: dict, generators) -> dict:
    """Each check of the photo pipeline. ``outcome``: {"stages": {stage: measured seconds}, "scores":
    {generator: {"gan_test", "evaluator_real_test"}}}; ``estimate``: the doctor's {"seconds", "stages"}; the
    estimate is checked for the whole pipeline and for each of ``generators``' stages."""
    scores, stages = outcome["scores"], outcome["stages"]
    ratios = {"pipeline": estimate["seconds"] / wall,
              **{name: estimate["stages"][name] / stages[name] for name in generators}}
    return {"within_30_min": wall <= PIPELINE_BUDGET_SECONDS,
            "gan_test": {name: score["gan_test"] >= GAN_TEST_SHARE * score["evaluator_real_test"]
                         for name, score in scores.items()},
            "estimate_ratio": {name: round(ratio, 2) for name, ratio in ratios.items()},
            "estimate_within_2x": all(1 / ESTIMATE_FACTOR <= ratio <= ESTIMATE_FACTOR for ratio in ratios.values())}


def photo_pipeline_met(checks: dict) -> bool:
    """Met when every check of ``photo_pipeline_checks`` holds."""
    return checks["within_30_min"] and all(checks["gan_test"].values()) and checks["estimate_within_2x"]


# ---- bench_folder_defaults.py: the README's first command against a small sweep ----------------------------
DEFAULTS_MARGIN = 0.02  # the defaults' mean val accuracy within 2 points of the sweep's best
OLD_DEFAULTS = "old-defaults"  # reported beside the sweep, not part of it


def defaults_verdict(means: dict[str, float]) -> dict:
    """One folder's verdict from every variant's mean best val accuracy over the seeds (the whole sweep:
    part of it could flatter the defaults). The best is taken over the sweep without the old defaults."""
    sweep = {variant: mean for variant, mean in means.items() if variant != OLD_DEFAULTS}
    best = max(sweep, key=sweep.get)
    gap = round(sweep[best] - sweep["defaults"], 4)  # as the JSON shows it: 0.52 − 0.50 is 2 points, met
    return {"defaults": round(sweep["defaults"], 4), "best": best, "best_val": round(sweep[best], 4),
            "gap": gap, "met": gap <= DEFAULTS_MARGIN,
            "old_defaults": round(means[OLD_DEFAULTS], 4) if OLD_DEFAULTS in means else None}


def folder_defaults_met(verdicts: dict[str, dict], folders) -> bool | None:
    """None until some folder has a verdict; then met only when every folder has one and each is met."""
    if not verdicts:
        return None
    return all(v["met"] for v in verdicts.values()) and set(verdicts) == set(folders)


# ---- bench_transfer.py: from scratch vs fine-tuned on the photo folders -------------------------------------
def transfer_met(gains: dict[str, float], folders) -> bool:
    """Met when every folder is measured (a gain over all seeds of both arms): the issue sets no margin, so
    the gain is reported, whatever its sign."""
    return bool(gains) and set(gains) == set(folders)


# ---- malformed_inputs.py: the malformed-input suite through the CLI ---------------------------------------
def all_cases_pass(rows: list[dict]) -> bool:
    """Met when every case's row says it passed."""
    return sum(row["pass"] == "yes" for row in rows) == len(rows)
