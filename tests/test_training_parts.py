"""The training parts any loop can use: checkpointer, metrics logger, and a two-optimizer loop built on them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import sigkill_at_random_step
from visrep.errors import UserError
from visrep.training.checkpointer import Checkpointer
from visrep.training.ema import EMA
from visrep.training.metrics_log import MetricsLogger

TOY_LOOP = Path(__file__).with_name("toy_two_optimizer_loop.py")


def _objects(seed: int):
    torch.manual_seed(seed)
    first, second = torch.nn.Linear(3, 2), torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(list(first.parameters()) + list(second.parameters()), lr=0.1, momentum=0.9)
    return first, second, optimizer, EMA(first, 0.5)


def _train_a_little(first, second, optimizer, ema) -> None:
    loss = second(first(torch.randn(4, 3))).pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    ema.update(first)


def test_checkpointer_restores_every_named_object_values_and_rng(tmp_path):
    objects = _objects(0)
    _train_a_little(*objects)
    first, second, optimizer, ema = objects
    saver = Checkpointer(tmp_path / "checkpoints", keep=2, first=first, second=second, optimizer=optimizer, ema=ema)
    saver.save(1, step=7, note="after one step")
    expected_draw = torch.rand(3)  # what the RNG gives right after the save

    fresh = _objects(1)
    loader = Checkpointer(tmp_path / "checkpoints", first=fresh[0], second=fresh[1], optimizer=fresh[2], ema=fresh[3])
    assert loader.restore_latest() == {"step": 7, "note": "after one step"}
    assert torch.equal(torch.rand(3), expected_draw)
    for mine, theirs in zip((first, second, ema.model), (fresh[0], fresh[1], fresh[3].model)):
        for a, b in zip(mine.state_dict().values(), theirs.state_dict().values()):
            assert torch.equal(a, b)
    assert fresh[2].state_dict()["state"][0]["momentum_buffer"].equal(optimizer.state_dict()["state"][0]["momentum_buffer"])


def test_checkpointer_keeps_the_newest_and_skips_a_truncated_one(tmp_path):
    first, second, optimizer, ema = _objects(0)
    saver = Checkpointer(tmp_path / "checkpoints", keep=2, first=first)
    for index in (1, 2, 3):
        saver.save(index, step=index)
    assert [p.name for p in saver.saved()] == ["state-00002.pt", "state-00003.pt"]
    newest = saver.saved()[-1]
    newest.write_bytes(newest.read_bytes()[:100])  # a kill in the middle of a copy, say
    assert Checkpointer(tmp_path / "checkpoints", first=first).restore_latest() == {"step": 2}
    with pytest.raises(UserError, match="nothing to resume"):
        Checkpointer(tmp_path / "empty", first=first).restore_latest()


def test_metrics_logger_appends_and_truncates_after_a_resume(tmp_path):
    from visrep.runs import Run, _make_logger

    (tmp_path / "run").mkdir()
    run = Run(tmp_path / "run", _make_logger(tmp_path / "run", True))
    log = MetricsLogger(run, tensorboard=False, progress=False)
    for step in (5, 10, 15):
        log.log({"step": step, "loss": 1.0 / step}, step)
    log.truncate("step", 10)
    assert [record["step"] for record in log.history()] == [5, 10]
    silent = MetricsLogger(run, is_main=False)
    silent.log({"step": 20}, 20)  # another rank: writes nothing
    assert [record["step"] for record in log.history()] == [5, 10]


def _toy(root: Path, name: str, *flags: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TOY_LOOP.parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(TOY_LOOP), str(root), name, *flags], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow(reason="~15 s; make test keeps its parts: the GAN's in-process resume (two networks' "
                         "checkpoints) and the classifier's SIGKILL test (the kill itself)")
def test_two_network_two_optimizer_loop_killed_and_resumed_ends_with_the_same_weights(tmp_path):
    reference = _toy(tmp_path, "reference")
    assert reference.wait(timeout=300) == 0, reference.stderr.read()
    killed = _toy(tmp_path, "killed")
    where = sigkill_at_random_step(killed, tmp_path / "killed" / "checkpoints", epochs=12)
    resumed = _toy(tmp_path, "killed", "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    expected = torch.load(tmp_path / "reference" / "final.pt", weights_only=True)
    got = torch.load(tmp_path / "killed" / "final.pt", weights_only=True)
    for network in ("generator", "discriminator", "ema"):
        for key, tensor in expected[network].items():
            assert torch.equal(tensor, got[network][key]), f"{network}.{key} differs after resume ({where})"
    history = [json.loads(line) for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert history == [json.loads(line) for line in (tmp_path / "reference" / "metrics.jsonl").read_text().splitlines()]


def test_checkpoints_are_ordered_by_index_as_a_number(tmp_path):
    first = torch.nn.Linear(2, 1)
    saver = Checkpointer(tmp_path / "checkpoints", keep=2, first=first)
    for index in (99_998, 99_999, 100_000):  # a generator loop indexes by step and passes 99,999
        saver.save(index, step=index)
    assert [p.name for p in saver.saved()] == ["state-99999.pt", "state-100000.pt"]
    assert saver.restore_latest() == {"step": 100_000}
