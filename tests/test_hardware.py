"""Precision and threads chosen from the machine: the bf16 check, auto, the thread policy, the record."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from visrep.errors import UserError
from visrep.hardware import cpu, precision, threads
from visrep.hardware.cpu import CpuInfo, isa_cap_excluding_bf16, native_bf16_verdict
from visrep.hardware.precision import resolve_precision


def _cpu(native: bool) -> CpuInfo:
    return CpuInfo(model="test CPU", flags=("avx2",), torch_capability="AVX2", avx512_bf16=native, amx=False,
                   isa_cap=None, native_bf16=native, reason="native" if native else "emulated")


@pytest.mark.parametrize("avx512_bf16, amx, cap, native", [
    (False, False, None, False), (True, False, None, True), (False, True, None, True),
    (True, True, "ONEDNN_MAX_CPU_ISA=AVX2", False)])
def test_native_bf16_needs_the_instructions_and_no_isa_cap(avx512_bf16, amx, cap, native):
    verdict, reason = native_bf16_verdict(avx512_bf16, amx, cap)
    assert verdict is native and reason


@pytest.mark.parametrize("env, capped", [
    ({}, False), ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, True), ({"ONEDNN_MAX_CPU_ISA": "avx512_core_amx"}, False),
    ({"ATEN_CPU_CAPABILITY": "avx2"}, True), ({"ATEN_CPU_CAPABILITY": "avx512"}, False)])
def test_isa_caps_that_switch_bf16_kernels_off(monkeypatch, env, capped):
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert (isa_cap_excluding_bf16() is not None) is capped


@pytest.mark.parametrize("native, expected", [(False, "fp32"), (True, "bf16")])
def test_auto_follows_the_capability_check(monkeypatch, native, expected):
    monkeypatch.setattr(precision, "read_cpu_info", lambda: _cpu(native))
    choice = resolve_precision("auto", "cpu")
    assert choice.precision == expected and choice.requested == "auto"
    assert choice.reason == ("native" if native else "emulated")


@pytest.mark.parametrize("native", [False, True])
def test_explicit_precisions_stay_explicit(monkeypatch, native):
    monkeypatch.setattr(precision, "read_cpu_info", lambda: _cpu(native))
    assert resolve_precision("fp32").precision == "fp32"
    assert resolve_precision("bf16").precision == "bf16"  # slow without native bf16, but what was asked for


def test_unknown_precision_is_a_user_error():
    with pytest.raises(UserError, match="train.precision must be one of auto, fp32, bf16, fp16"):
        resolve_precision("fp8", "cpu", "train.precision")


def test_this_machines_check_uses_torchs_capability_api():
    info = cpu.read_cpu_info()
    assert info.avx512_bf16 == torch.cpu._is_avx512_bf16_supported()
    assert info.amx == torch.cpu._is_amx_tile_supported()
    assert info.native_bf16 == ((info.avx512_bf16 or info.amx) and info.isa_cap is None)


@pytest.mark.parametrize("cores, busy, expected", [(2, 0.0, 2), (2, 0.2, 2), (2, 1.0, 1), (2, 2.0, 1),
                                                   (4, 1.0, 3), (8, 0.1, 8), (2, None, 2), (1, 0.0, 1)])
def test_threads_leave_busy_cores_alone(cores, busy, expected):
    assert threads.threads_for(cores, busy) == expected


def test_busy_cores_are_read_from_proc_stat_deltas(monkeypatch):
    samples = iter([{0: (1000, 500), 1: (1000, 900)}, {0: (1100, 500), 1: (1100, 1000)}])  # cpu0 busy, cpu1 idle
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(threads, "_affinity", lambda: {0, 1})
    assert threads.busy_cores_elsewhere(2, interval=0) == pytest.approx(1.0)


def test_one_busy_process_means_one_thread(monkeypatch):
    for name in ("VISREP_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores_elsewhere", lambda cores: 1.0)
    choice = threads.choose_threads()
    assert choice.threads == 1 and "1.0 busy" in choice.reason


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "VISREP_THREADS", threads._OURS)}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          timeout=120)


def test_thread_count_is_set_before_torch_loads():
    """`import visrep` puts OMP_NUM_THREADS in place without importing torch; torch's OpenMP pool then has it
    from its first parallel region on (parallel_info reads the OpenMP runtime itself)."""
    code = ("import os, sys, visrep; assert 'torch' not in sys.modules; print(os.environ['OMP_NUM_THREADS']); "
            "import torch; torch.ones(4096).sum(); print(torch.get_num_threads()); "
            "print([l for l in torch.__config__.parallel_info().splitlines() if 'omp_get_max_threads' in l][0])")
    result = _python(code, VISREP_THREADS="1")
    assert result.returncode == 0, result.stderr
    omp, torch_threads, runtime = result.stdout.splitlines()
    assert omp == "1" and torch_threads == "1" and runtime.strip().endswith(": 1")


def test_users_omp_num_threads_wins_and_children_choose_again():
    code = "import visrep.hardware.threads as t; c = t.configure_process(); print(c.threads, c.reason)"
    assert _python(code, OMP_NUM_THREADS="1").stdout.startswith("1 OMP_NUM_THREADS set by the user")
    # a child that inherits visrep's own OMP_NUM_THREADS samples the load again instead of obeying it
    child = _python(code, OMP_NUM_THREADS="7", **{threads._OURS: "7"}).stdout
    assert "usable cores" in child


def test_bad_thread_setting_is_one_error_line():
    result = subprocess.run([sys.executable, "-m", "visrep", "models"], capture_output=True, text=True,
                            env={**os.environ, "VISREP_THREADS": "many"}, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: VISREP_THREADS must be a whole number ≥ 1 (got 'many')"


def test_a_run_records_what_was_picked(tiny_trained_run):
    record = json.loads((tiny_trained_run / "compute.json").read_text())
    assert record["precision"]["requested"] == "auto"
    expected = "bf16" if cpu.read_cpu_info().native_bf16 else "fp32"
    assert record["precision"]["precision"] == expected and record["precision"]["reason"]
    assert record["threads"]["torch_threads"] == 1  # tiny.yaml sets train.threads: 1
    assert record["threads"]["reason"] == "set by the stage's config"
    assert record["cpu"]["flags"] == list(cpu.read_cpu_info().flags) and "native_bf16" in record["cpu"]
    assert record["channels_last"] is True


def test_doctor_reports_flags_picks_speed_and_estimates(capsys, tmp_path):
    import shutil
    from pathlib import Path

    from visrep.cli import main

    configs = Path(__file__).resolve().parents[1] / "configs"
    names = {"tiny.yaml", "gan_tiny.yaml", "diffusion_tiny.yaml", "guide_tiny.yaml", "evaluator_tiny.yaml",
             "pipeline_tiny.yaml"}  # the tiny recipes: timing every shipped generator takes about a minute
    for name in names:
        shutil.copy(configs / name, tmp_path / name)
    assert main(["doctor", "--seconds", "0.2", "--configs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"auto picks {resolve_precision('auto').precision}" in out
    assert "fp32" in out and "bf16" in out and "img/s" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and ".yaml" in line}
    assert set(lines) == names  # every config gets a line
    assert not any("not estimated" in line for line in lines.values()), lines
    assert "(timed)" in lines["gan_tiny.yaml"] and "steps x" in lines["diffusion_tiny.yaml"]
    assert "gan" in lines["pipeline_tiny.yaml"] and "~" in lines["pipeline_tiny.yaml"]


def test_estimates_scale_with_measured_speed_and_resizing():
    from pathlib import Path

    from visrep.doctor import Throughput, estimate_config, forward_flops

    configs = Path(__file__).resolve().parents[1] / "configs"
    slow, fast = Throughput("fp32", 100.0, 3), Throughput("fp32", 200.0, 3)
    assert estimate_config(configs / "digits.yaml", slow)["seconds"] == pytest.approx(
        2 * estimate_config(configs / "digits.yaml", fast)["seconds"])
    assert estimate_config(configs / "digits.yaml", slow)["images"] == int(1797 * 0.8 * 0.9)
    # progressive resizing: the 20 px epochs cost less than the 28 px ones
    assert forward_flops("fastcnn", 1, 20, widths=[32, 64, 128]) < forward_flops("fastcnn", 1, 28, widths=[32, 64, 128])


def test_a_cgroup_quota_is_trusted_over_the_hosts_load(monkeypatch):
    """In a container /proc/stat shows the host's CPUs: their load says nothing about our quota."""
    for name in ("VISREP_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: 2.0)
    monkeypatch.setattr(threads, "_affinity", lambda: set(range(32)))
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(32)))
    monkeypatch.setattr(threads, "busy_cores_elsewhere", lambda cores: pytest.fail("sampled the host's load"))
    assert threads.choose_threads().threads == 2


def test_a_saved_run_config_is_not_locked_out_by_newer_value_checks(tmp_path):
    from visrep.config import ClassifierConfig
    from visrep.runs import load_run_config

    (tmp_path / "config.yaml").write_text("train:\n  threads: 0\n  keep_checkpoints: 0\n")  # accepted by older code
    assert load_run_config(tmp_path, ClassifierConfig).train.threads == 0


# ---- device choice (train.device, generative.device, embed.device, --device) -------------------------
def test_device_auto_is_the_cpu_without_a_gpu_and_an_absent_device_is_one_clear_error(monkeypatch):
    import torch

    from visrep.errors import UserError
    from visrep.hardware.distributed import DistInfo, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    for asked in ("cuda", "mps"):
        with pytest.raises(UserError, match=f"train.device={asked}"):
            resolve_device(asked)
    with pytest.raises(UserError, match="must be one of auto, cpu, cuda, mps"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cpu")  # MPS only by name: the loops were never run on it
    assert resolve_device("mps") == torch.device("mps")
    with pytest.raises(UserError, match="one process"):  # torch.distributed has no MPS backend
        resolve_device("mps", DistInfo(0, 2, 0))


def test_a_bad_device_in_a_config_is_refused_when_it_is_read():
    from visrep.config import GanConfig, load_config
    from visrep.errors import UserError

    with pytest.raises(UserError, match="train.device"):
        load_config(None, ["train.device=gpu"], GanConfig)


def test_generator_estimates_are_timed_steps_times_steps_capped_and_plus_sampling(monkeypatch):
    """A generator's time: its timed step × train.steps, capped at train.max_minutes; a diffusion model adds
    the U-Net forwards of its final samples and grids, two per guided step (issue 33)."""
    from visrep.config import DiffusionConfig, GanConfig, load_config
    from visrep.doctor import generator_cost

    monkeypatch.setattr(generator_cost, "_median_seconds", lambda step: 0.5)  # every timed call: 0.5 s
    gan = load_config(None, ["data.source=digits", "data.image_size=16", "data.channels=1", "data.batch_size=8",
                             "gan.g_width=8", "gan.d_width=8", "train.steps=100"], GanConfig)
    estimate = generator_cost.estimate_generator("gan", gan)
    assert estimate["train_seconds"] == pytest.approx(50.0) and not estimate["capped"]
    assert "conditioning run is not here" in estimate["note"]  # the default classifier stands in, said so
    gan.train.max_minutes = 0.5
    assert generator_cost.estimate_generator("gan", gan)["train_seconds"] == pytest.approx(30.0)
    diffusion = load_config(None, ["data.source=digits", "data.image_size=16", "data.channels=1",
                                   "data.batch_size=10", "diffusion.width=8", "train.steps=100",
                                   "train.sample_every=1000", "diffusion.final_samples=20",
                                   "diffusion.sample_steps=5", "diffusion.guidance_interval=[0.25,0.75]"],
                            DiffusionConfig)
    estimate = generator_cost.estimate_generator("diffusion", diffusion)
    # (20 final images × 5 sampler steps + one closing grid of 10 classes × 8 at the loop's 20 steps)
    # × 1.5 forwards (guided over half the trajectory) × 0.05 s per image
    assert estimate["sampling_seconds"] == pytest.approx((20 * 5 + 80 * 20) * 1.5 * 0.05)
    assert estimate["seconds"] == pytest.approx(50.0 + estimate["sampling_seconds"])


def test_a_config_doctor_cannot_estimate_says_why_in_words(tmp_path):
    """Not 'not estimated (UserError)': what is wrong, in words (issue 33)."""
    from pathlib import Path

    from visrep.doctor import Throughput, estimate_line

    rate = Throughput("bf16", 500.0, 3)
    (tmp_path / "gan_bad.yaml").write_text("gan:\n  g_width: [1, 2]\n")
    line = estimate_line(tmp_path / "gan_bad.yaml", rate)
    assert "not estimated: " in line and "g_width" in line and "Error)" not in line
    (tmp_path / "folder.yaml").write_text("data:\n  source: ~/no-such-folder\n  image_size: 32\n")
    assert "not estimated: data not found here" in estimate_line(tmp_path / "folder.yaml", rate)
    # what the GAN's own loop refuses is refused here in its words, not as a traceback from a timed step
    (tmp_path / "gan_unguidable.yaml").write_text("data:\n  image_size: 16\n  batch_size: 8\n"
                                                 "gan:\n  conditioning: none\n  guidance_weight: 0.5\n")
    assert "not estimated: gan.guidance_weight > 0 needs a condition" in estimate_line(
        tmp_path / "gan_unguidable.yaml", rate)
    (tmp_path / "diffusion_unbatched.yaml").write_text("data:\n  source: ~/no-such-folder\n  image_size: 16\n"
                                                      "diffusion:\n  width: 8\n")
    assert "data.batch_size is derived from the data" in estimate_line(tmp_path / "diffusion_unbatched.yaml", rate)
    configs = Path(__file__).resolve().parents[1] / "configs"
    assert "(timed)" in estimate_line(configs / "gan_tiny.yaml", rate)
