"""The bench scripts' verdicts (met / not met) and ratios on made-up figures, each threshold crossed both ways
(issue 36, item 4: verdicts computed by the scripts, never typed into the JSON).

Pure functions only: nothing trains, samples or times. The scripts whose imports are heavy (torch, visrep's
training stack) keep their verdicts in benchmarks/verdicts.py, which is standard library only; the others
are imported as they are.
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_diffusion  # noqa: E402
import bench_gan  # noqa: E402
import verdicts  # noqa: E402
from bench_representation_reuse import MIN_SAVED_SECONDS, old_vs_new, reuse_met  # noqa: E402
from compare_pipelines import row_for  # noqa: E402
from time_test_suite import BUDGET_SECONDS, suite_met  # noqa: E402

# a GAN row better than BASELINE on every metric, with the goal's figures met
OURS = {"fid": 0.2, "kid": 0.002, "precision": 0.9, "recall": 0.85, "density": 1.0, "coverage": 0.85, "gan_test": 0.999}
BASELINE = {"fid": 0.3, "kid": 0.004, "precision": 0.8, "recall": 0.8, "density": 0.8, "coverage": 0.8, "gan_test": 0.9}


# ---- bench_gan.py -------------------------------------------------------------------------------------------
def test_gan_ratio_calls_a_lower_fid_better_and_a_higher_fid_worse():
    assert bench_gan.ratios({"fid": 0.2}, {"fid": 0.4}) == {"fid": {"ratio": 0.5, "better": True}}
    assert bench_gan.ratios({"fid": 0.4}, {"fid": 0.2}) == {"fid": {"ratio": 2.0, "better": False}}


def test_gan_ratio_calls_a_higher_coverage_better_and_a_tie_not_better():
    assert bench_gan.ratios({"coverage": 0.9}, {"coverage": 0.8})["coverage"]["better"] is True
    assert bench_gan.ratios({"coverage": 0.8}, {"coverage": 0.9})["coverage"]["better"] is False
    assert bench_gan.ratios({"coverage": 0.8}, {"coverage": 0.8})["coverage"] == {"ratio": 1.0, "better": False}
    assert bench_gan.ratios({"fid": 0.3}, {"fid": 0.3})["fid"]["better"] is False  # a tie is not a win either way


def test_gan_ratio_skips_a_missing_metric_and_gives_no_ratio_over_a_zero_baseline():
    found = bench_gan.ratios({"fid": 0.1, "kid": 0.001, "recall": None}, {"fid": 0.2, "kid": 0.0, "recall": 0.5})
    assert set(found) == {"fid", "kid"}
    assert found["kid"] == {"ratio": None, "better": False}


def _gan_met(ours, baseline=BASELINE | {"coverage": 0.7}):
    return bench_gan.goal_met(ours, bench_gan.ratios(ours, baseline))


def test_gan_goal_is_met_at_gan_test_098_and_not_just_below():
    assert bench_gan.TARGET_GAN_TEST == 0.98
    assert _gan_met(OURS | {"gan_test": 0.98})
    assert not _gan_met(OURS | {"gan_test": 0.9799})  # still better than the baseline's 0.9


def test_gan_goal_is_met_at_coverage_08_and_not_just_below():
    assert bench_gan.TARGET_COVERAGE == 0.8
    assert _gan_met(OURS | {"coverage": 0.8})
    assert not _gan_met(OURS | {"coverage": 0.7999})  # still better than the baseline's 0.7
    assert not bench_gan.goal_met(OURS | {"coverage": None}, None)  # a missing figure counts as 0


def test_gan_goal_is_not_met_when_the_baseline_wins_or_ties_one_metric():
    assert _gan_met(OURS, BASELINE)
    assert not _gan_met(OURS, BASELINE | {"recall": 0.86})
    assert not _gan_met(OURS, BASELINE | {"fid": 0.2})


def test_gan_goal_without_a_baseline_needs_only_gan_test_and_coverage():
    assert bench_gan.goal_met(OURS, None)
    assert not bench_gan.goal_met(OURS | {"gan_test": 0.97}, None)


def test_gan_goal_follows_the_targets_given_on_the_command_line():
    assert bench_gan.goal_met(OURS | {"gan_test": 0.95}, None, target_gan_test=0.95, target_coverage=0.8)
    assert not bench_gan.goal_met(OURS | {"gan_test": 0.95}, None, target_gan_test=0.96, target_coverage=0.8)


# ---- bench_diffusion.py ---------------------------------------------------------------------------------------
DIFF_OURS = OURS | {"gan_test": 0.995, "images_per_s": 200.0, "sampling_images_per_s": 100.0}
DIFF_BASE = BASELINE | {"precision": 0.7, "recall": 0.7, "coverage": 0.7, "images_per_s": 100.0,
                        "sampling_images_per_s": 5.0}


def _diffusion_met(ours, base=DIFF_BASE):
    return bench_diffusion.comparison_met(ours, bench_diffusion.versus_baseline(ours, base))


def test_diffusion_ratio_is_better_above_for_a_speed_and_below_for_a_distance():
    assert bench_diffusion._ratio(6.0, 5.0, True) == {"ratio": 1.2, "better": True}
    assert bench_diffusion._ratio(4.0, 5.0, True)["better"] is False
    assert bench_diffusion._ratio(5.0, 5.0, True)["better"] is False
    assert bench_diffusion._ratio(4.0, 5.0, False)["better"] is True
    assert bench_diffusion._ratio(1.0, 0.0, True) == {"ratio": None, "better": True}


def test_diffusion_versus_baseline_adds_training_and_sampling_speed_to_the_metrics():
    found = bench_diffusion.versus_baseline(DIFF_OURS, DIFF_BASE)
    assert set(found) == set(bench_gan.METRICS) | {"images_per_s", "sampling_images_per_s"}
    assert found["sampling_images_per_s"] == {"ratio": 20.0, "better": True}
    assert found["images_per_s"] == {"ratio": 2.0, "better": True}


def test_diffusion_comparison_is_met_at_20x_sampling_speed_and_not_at_19_99x():
    assert bench_diffusion.TARGET_SAMPLING_RATIO == 20
    assert _diffusion_met(DIFF_OURS)
    assert not _diffusion_met(DIFF_OURS | {"sampling_images_per_s": 99.95})  # 19.99x


def test_diffusion_comparison_is_met_at_gan_test_099_and_not_just_below():
    assert bench_diffusion.TARGET_GAN_TEST == 0.99
    assert _diffusion_met(DIFF_OURS | {"gan_test": 0.99})
    assert not _diffusion_met(DIFF_OURS | {"gan_test": 0.9899})  # still better than the baseline's 0.9


def test_diffusion_comparison_needs_precision_recall_and_coverage_each_at_08():
    assert (bench_diffusion.TARGET_SPREAD, bench_diffusion.SPREAD_METRICS) == (0.8, ("precision", "recall", "coverage"))
    for key in bench_diffusion.SPREAD_METRICS:
        assert _diffusion_met(DIFF_OURS | {key: 0.8}), key
        assert not _diffusion_met(DIFF_OURS | {key: 0.7999}), key  # still better than the baseline's 0.7


def test_diffusion_comparison_is_not_met_when_the_baseline_wins_one_metric_but_may_train_faster():
    assert not _diffusion_met(DIFF_OURS, DIFF_BASE | {"kid": 0.001})
    assert not _diffusion_met(DIFF_OURS, DIFF_BASE | {"fid": 0.2})  # a tie is not better
    assert _diffusion_met(DIFF_OURS, DIFF_BASE | {"images_per_s": 400.0})  # training speed: reported, not a target


# ---- bench_sampling_speed.py (verdicts.py) ----------------------------------------------------------------
def test_sampling_speed_ratio_is_each_models_median_over_the_baselines_median():
    rows = verdicts.sampling_speed_rows({"ours": [90.0, 100.0, 130.0], "base": [4.0, 5.0, 9.0]}, "base")
    assert rows == [{"model": "ours", "images_per_s": 100.0, "runs": [90.0, 100.0, 130.0], "ratio": 20.0},
                    {"model": "base", "images_per_s": 5.0, "runs": [4.0, 5.0, 9.0], "ratio": 1.0}]


def test_sampling_speed_is_met_at_20x_and_not_at_19x():
    assert (verdicts.SAMPLING_SPEED_RATIO, verdicts.SAMPLING_IMAGES_PER_S) == (20, 50)
    assert verdicts.sampling_speed_met([{"ratio": 20.0, "images_per_s": 100.0}])
    assert not verdicts.sampling_speed_met([{"ratio": 19.99, "images_per_s": 100.0}])
    assert not verdicts.sampling_speed_met([{"ratio": 19.0, "images_per_s": 100.0}])


def test_sampling_speed_is_met_at_50_images_per_s_and_not_just_below():
    assert verdicts.sampling_speed_met([{"ratio": 25.0, "images_per_s": 50.0}])
    assert not verdicts.sampling_speed_met([{"ratio": 25.0, "images_per_s": 49.99}])


def test_sampling_speed_is_met_when_one_of_our_rows_reaches_both_and_not_by_two_rows_reaching_one_each():
    assert verdicts.sampling_speed_met([{"ratio": 15.0, "images_per_s": 70.0}, {"ratio": 21.0, "images_per_s": 52.0}])
    assert not verdicts.sampling_speed_met([{"ratio": 15.0, "images_per_s": 70.0},
                                            {"ratio": 30.0, "images_per_s": 40.0}])
    assert not verdicts.sampling_speed_met([])


def test_sampling_speed_verdict_reads_the_rounded_ratio_the_table_shows():
    rows = verdicts.sampling_speed_rows({"ours": [49.99], "base": [2.5]}, "base")  # 19.996x shows as 20.0x
    assert rows[0]["ratio"] == 20.0
    assert not verdicts.sampling_speed_met(rows[:-1])  # but 49.99 img/s is under the aim
    assert verdicts.sampling_speed_met(verdicts.sampling_speed_rows({"ours": [50.0], "base": [2.5]}, "base")[:-1])


# ---- bench_photo_pipeline.py (verdicts.py) ------------------------------------------------------------------
def _pipeline(wall=1500.0, gan_test=0.9, real_test=1.0, estimate=1500.0, gan_estimate=300.0, gan_measured=300.0):
    outcome = {"stages": {"gan": gan_measured, "diffusion": 400.0, "classifier": 200.0},
               "scores": {"gan": {"gan_test": gan_test, "evaluator_real_test": real_test},
                          "diffusion": {"gan_test": 0.9, "evaluator_real_test": real_test}}}
    doctor = {"seconds": estimate, "stages": {"gan": gan_estimate, "diffusion": 400.0, "classifier": 1000.0}}
    return verdicts.photo_pipeline_checks(wall, outcome, doctor, ("gan", "diffusion"))


def test_photo_pipeline_is_within_budget_at_30_min_and_not_a_second_over():
    assert verdicts.PIPELINE_BUDGET_SECONDS == 1800
    assert _pipeline(wall=1800.0, estimate=1800.0)["within_30_min"] is True
    assert _pipeline(wall=1801.0, estimate=1800.0)["within_30_min"] is False


def test_photo_pipeline_gan_test_passes_at_08_of_the_real_test_accuracy_and_not_below():
    assert verdicts.GAN_TEST_SHARE == 0.8
    assert _pipeline(gan_test=0.4, real_test=0.5)["gan_test"]["gan"] is True  # 0.8 × 0.5 exactly
    assert _pipeline(gan_test=0.3999, real_test=0.5)["gan_test"]["gan"] is False
    assert _pipeline(gan_test=0.3999, real_test=0.5)["gan_test"]["diffusion"] is True  # each generator on its own


def test_photo_pipeline_estimate_is_within_2x_at_both_ends_and_not_beyond():
    assert verdicts.ESTIMATE_FACTOR == 2.0
    assert _pipeline(wall=1000.0, estimate=2000.0)["estimate_within_2x"] is True
    assert _pipeline(wall=1000.0, estimate=500.0)["estimate_within_2x"] is True
    assert _pipeline(wall=1000.0, estimate=2010.0)["estimate_within_2x"] is False
    assert _pipeline(wall=1000.0, estimate=490.0)["estimate_within_2x"] is False


def test_photo_pipeline_estimate_is_checked_per_generator_stage_too_but_not_per_other_stage():
    assert _pipeline()["estimate_within_2x"] is True  # the classifier stage's estimate is 5x off: not checked
    assert _pipeline(gan_estimate=600.0, gan_measured=300.0)["estimate_within_2x"] is True
    checks = _pipeline(gan_estimate=601.0, gan_measured=300.0)
    assert checks["estimate_within_2x"] is False
    assert checks["estimate_ratio"] == {"pipeline": 1.0, "gan": 2.0, "diffusion": 1.0}  # shown rounded


def test_photo_pipeline_is_met_only_when_every_check_holds():
    assert verdicts.photo_pipeline_met(_pipeline()) is True
    assert not verdicts.photo_pipeline_met(_pipeline(wall=1801.0, estimate=1801.0))
    assert not verdicts.photo_pipeline_met(_pipeline(gan_test=0.5, real_test=1.0))
    assert not verdicts.photo_pipeline_met(_pipeline(estimate=4000.0))


# ---- bench_folder_defaults.py (verdicts.py) ---------------------------------------------------------------
def _sweep(defaults, best, old=0.5):
    return {"defaults": defaults, "old-defaults": old, "batch-half": best, "lr0.1": defaults - 0.05}


def test_folder_defaults_are_met_within_2_points_of_the_sweeps_best_and_not_beyond():
    assert verdicts.DEFAULTS_MARGIN == 0.02
    assert verdicts.defaults_verdict(_sweep(0.90, 0.915)) == {"defaults": 0.9, "best": "batch-half", "best_val": 0.915,
                                                              "gap": 0.015, "met": True, "old_defaults": 0.5}
    assert verdicts.defaults_verdict(_sweep(0.90, 0.9201))["met"] is False


def test_folder_defaults_gap_equal_to_the_margin_is_met():
    # 0.52 − 0.50 is 0.020000000000000018 as floats: the gap is compared as the JSON shows it, 2 points
    assert verdicts.defaults_verdict(_sweep(0.02, 0.04, old=0.0))["met"] is True
    assert verdicts.defaults_verdict(_sweep(0.50, 0.52, old=0.0))["met"] is True
    assert verdicts.defaults_verdict(_sweep(0.50, 0.5201, old=0.0))["met"] is False


def test_folder_defaults_best_is_the_defaults_themselves_when_nothing_beats_them():
    verdict = verdicts.defaults_verdict(_sweep(0.95, 0.90))
    assert (verdict["best"], verdict["gap"], verdict["met"]) == ("defaults", 0.0, True)


def test_folder_defaults_leave_the_old_defaults_out_of_the_sweep():
    verdict = verdicts.defaults_verdict(_sweep(0.90, 0.91, old=0.99))
    assert (verdict["best"], verdict["met"], verdict["old_defaults"]) == ("batch-half", True, 0.99)


def test_folder_defaults_goal_has_no_verdict_until_a_folder_has_one_then_needs_every_folder_met():
    met, missed = {"met": True}, {"met": False}
    folders = ("flowers17", "clothing10")
    assert verdicts.folder_defaults_met({}, folders) is None
    assert verdicts.folder_defaults_met({"flowers17": met}, folders) is False
    assert verdicts.folder_defaults_met({"flowers17": met, "clothing10": met}, folders) is True
    assert verdicts.folder_defaults_met({"flowers17": met, "clothing10": missed}, folders) is False


# ---- bench_transfer.py (verdicts.py) ---------------------------------------------------------------------
def test_transfer_is_met_once_both_folders_are_measured_whatever_the_sign_of_the_gain():
    folders = ("flowers17", "clothing10")
    assert verdicts.transfer_met({"flowers17": 0.05, "clothing10": -0.01}, folders) is True
    assert verdicts.transfer_met({"flowers17": 0.05}, folders) is False
    assert verdicts.transfer_met({}, folders) is False


# ---- malformed_inputs.py (verdicts.py) -------------------------------------------------------------------
def test_malformed_inputs_are_met_when_every_case_passes_and_not_when_one_fails():
    assert verdicts.all_cases_pass([{"pass": "yes"}, {"pass": "yes"}]) is True
    assert verdicts.all_cases_pass([{"pass": "yes"}, {"pass": "NO"}]) is False


# ---- bench_representation_reuse.py ---------------------------------------------------------------------
def test_representation_reuse_takes_medians_and_the_speedup_is_old_over_new():
    assert old_vs_new([3.0, 1.0, 2.0], [0.5, 0.4, 9.0]) == {"old_seconds": 2.0, "new_seconds": 0.5,
                                                            "saved_seconds": 1.5, "speedup": 4.0, "runs": 3}
    assert old_vs_new([1.0], [0.0])["speedup"] is None


def test_representation_reuse_is_met_when_every_place_saves_time_and_not_when_one_breaks_even():
    assert MIN_SAVED_SECONDS == 0.0
    assert reuse_met([{"saved_seconds": 51.6}, {"saved_seconds": 0.001}]) is True
    assert reuse_met([{"saved_seconds": 51.6}, {"saved_seconds": 0.0}]) is False
    assert reuse_met([{"saved_seconds": 51.6}, {"saved_seconds": -0.001}]) is False


def test_representation_reuse_saving_under_half_a_millisecond_counts_as_none():
    assert not reuse_met([old_vs_new([1.0004], [1.0])])  # saved_seconds rounds to 0.0


# ---- time_test_suite.py ----------------------------------------------------------------------------------
def test_test_suite_is_met_at_240_s_and_not_at_240_1_s():
    assert BUDGET_SECONDS == 240.0
    assert suite_met(0, 240.0) is True
    assert suite_met(0, 240.1) is False


def test_test_suite_is_not_met_when_pytest_fails_however_fast():
    assert suite_met(1, 10.0) is False


# ---- compare_pipelines.py ----------------------------------------------------------------------------------
def test_pipeline_metric_move_as_large_as_the_seed_spread_is_within_it_and_a_larger_one_is_not():
    assert row_for("FID", 0.5, 0.75, 1.0)["within seed spread"] is True  # moved 0.25, other seed 0.25 away
    assert row_for("FID", 0.5, 0.75, 0.875)["within seed spread"] is False  # moved 0.25, other seed 0.125 away
    assert row_for("FID", 0.5, 0.5, 0.5) == {"metric": "FID", "before": 0.5, "after": 0.5, "equal": True,
                                             "after, other seed": 0.5, "within seed spread": True}


def test_pipeline_metric_without_a_seed_reference_or_a_figure_gets_no_spread_verdict():
    assert row_for("FID", 0.5, 0.75, None) == {"metric": "FID", "before": 0.5, "after": 0.75, "equal": False}
    assert "within seed spread" not in row_for("FID", None, 0.75, 0.8)
