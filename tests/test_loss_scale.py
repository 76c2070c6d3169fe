"""fp16 training: the loss scaler (what `precision: auto` picks on a CUDA GPU without bf16), tested on
the CPU, where autocast runs fp16 too (slowly): overflow skips a step instead of stopping the run,
and every loop trains and checkpoints the scale."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO

from visrep.config import ClassifierConfig, DiffusionConfig, GanConfig, GuideConfig, load_config
from visrep.hardware.precision import resolve_precision
from visrep.storage import load_state
from visrep.training.loss_scale import LossScaler


def test_an_overflowing_fp16_step_is_skipped_and_the_scale_backs_off():
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = LossScaler(torch.device("cpu"), "fp16")
    before = [p.detach().clone() for p in model.parameters()]
    start_scale = scaler.scaler.get_scale()
    loss = model(torch.full((2, 4), 1e34)).float().sum()  # finite, but its gradients × 65536 overflow fp32
    scaler.backward(loss)
    scaler.unscale(optimizer)
    scaler.step(optimizer)
    scaler.update()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the step was skipped
    assert scaler.scaler.get_scale() == start_scale / 2
    assert scaler.guarded(list(model.parameters())) == []  # the guard leaves gradient overflow to the scaler


def test_bf16_and_fp32_pass_through_unscaled():
    for precision in ("bf16", "fp32"):
        scaler = LossScaler(torch.device("cpu"), precision)
        model = torch.nn.Linear(2, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        before = model.weight.detach().clone()
        scaler.backward(model(torch.ones(1, 2)).sum())
        scaler.unscale(optimizer)
        assert torch.equal(model.weight.grad, torch.ones(1, 2))  # true gradients, no scale
        scaler.step(optimizer)
        scaler.update()
        assert torch.equal(model.weight.detach(), before - 1)  # a plain SGD step
        assert scaler.checkpointed() is None


def test_auto_trains_in_fp16_on_a_cuda_device_without_bf16_and_infers_in_fp32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert resolve_precision("auto", "cuda", training=True).precision == "fp16"
    assert resolve_precision("auto", "cuda").precision == "fp32"  # features, sampling: no loss scaler there
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_precision("auto", "cuda", training=True).precision == "bf16"


def test_a_batch_the_guard_skips_leaves_the_scaler_ready_for_the_next():
    """unscale → skip (the non-finite guard's path) → the next step unscales and steps normally."""
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = LossScaler(torch.device("cpu"), "fp16")
    scale = scaler.scaler.get_scale()
    scaler.backward(model(torch.full((1, 2), float("nan"))).sum())
    scaler.unscale(optimizer)
    scaler.skip()
    assert scaler.scaler.get_scale() == scale / 2
    before = model.weight.detach().clone()
    optimizer.zero_grad()
    scaler.backward(model(torch.ones(1, 2)).sum())
    scaler.unscale(optimizer)  # raised "unscale_() has already been called" before skip() existed
    scaler.step(optimizer)
    scaler.update()
    assert torch.allclose(model.weight.detach(), before - 0.1)


CPU_FP16 = "autocast runs fp16 slowly on a CPU; make test keeps the classifier's fp16 loop"


@pytest.mark.parametrize("stage", ["classifier",
                                   pytest.param("gan", marks=pytest.mark.slow(reason=CPU_FP16)),
                                   pytest.param("diffusion", marks=pytest.mark.slow(reason=CPU_FP16)),
                                   pytest.param("guide", marks=pytest.mark.slow(reason=CPU_FP16))])
def test_every_loop_trains_in_fp16_and_checkpoints_its_scale(stage, tiny_trained_run, tmp_path):
    from visrep.training.classifier import train_classifier
    from visrep.training.diffusion import train_diffusion
    from visrep.training.gan import train_gan
    from visrep.training.guide import train_guide

    config, schema, train = {"classifier": ("tiny.yaml", ClassifierConfig, train_classifier),
                             "gan": ("gan_tiny.yaml", GanConfig, train_gan),
                             "diffusion": ("diffusion_tiny.yaml", DiffusionConfig, train_diffusion),
                             "guide": ("guide_tiny.yaml", GuideConfig, train_guide)}[stage]
    conditioning = [] if stage == "classifier" else [f"{stage}.conditioning_run={tiny_trained_run}"]
    cfg = load_config(REPO / "configs" / config, [f"run.root={tmp_path}", "run.name=fp16", "train.precision=fp16",
                                                  f"data.cache_dir={tmp_path / 'cache'}", *conditioning], schema)
    run = train(cfg, progress=False)
    state = load_state(sorted((run / "checkpoints").glob("state-*.pt"))[-1])
    assert state["scaler"]["scale"] > 0  # resumes with the scale it had
    assert (run / "metrics.json").is_file()
