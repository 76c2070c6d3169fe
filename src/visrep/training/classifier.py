"""Classifier training: config → data → model → explicit loop → checkpoints and curves.

Written for DistributedDataParallel: each rank gets its own data shard, only rank 0 writes
files, logs or shows progress, and nothing lives in module-level state.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from tqdm import tqdm

from visrep.data.manifest import write_manifest
from visrep.data.prepare import PreparedData, prepare_data
from visrep.errors import UserError
from visrep.evaluation.classifier_eval import write_curve_artefacts
from visrep.evaluation.predict import autocast_context, predict_logits
from visrep.hardware.precision import check_precision, resolve_precision
from visrep.hardware.record import compute_line, compute_record
from visrep.hardware.threads import apply_threads
from visrep.models import create_model
from visrep.runs import Run, create_run, open_run
from visrep.seeding import seed_everything, set_deterministic
from visrep.training.checkpoint import (load_state, restore_rng_state, rng_state, save_state, save_weights)
from visrep.training.distributed import DistInfo, all_reduce_sum, pick_device, setup_distributed
from visrep.training.ema import EMA
from visrep.training.guards import NonFiniteGuard, check_batch_fits
from visrep.training.lookahead import Lookahead
from visrep.training.optim import build_optimizer, build_schedule, check_optim_config


def init_sample(data, max_images: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, C, S, S) normalised as in training, unaugmented; labels (N,)): N = min(max_images, train
    size) training images drawn uniformly at random, the same for a given seed (and on every DDP rank).

    Random, not the first N: a folder split lists its images class by class, so the first 5,000 of
    CIFAR-10's were 4,900 airplanes and 100 automobiles, and airbench's whitening stem was fitted to
    airplane patches alone (airbench takes the first 5,000 of CIFAR's own, shuffled, order)."""
    return next(iter(data.loader("train", max_images, train=True, augment=None, seed=seed)))


@dataclass
class TrainingState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    best_metric: float = -math.inf
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    train_seconds: float = 0.0  # time inside training steps only (no evaluation, no I/O)
    history: list[dict] = field(default_factory=list)


def build_classifier(cfg, data: PreparedData) -> torch.nn.Module:
    channels, size, _ = data.image_shape
    options = OmegaConf.to_container(cfg.model.options, resolve=True) if OmegaConf.is_config(cfg.model.options) \
        else dict(cfg.model.options)
    if cfg.model.pretrained_path:
        options["pretrained_path"] = cfg.model.pretrained_path
    return create_model(cfg.model.name, num_classes=len(data.class_names), in_channels=channels, image_size=size,
                        **options)


def train_classifier(cfg, resume: Path | None = None, progress: bool = True, stage: str = "classifier") -> Path:
    """Train per ``cfg`` (or continue the run at ``resume``) and return the run directory.

    ``stage`` names the run (``<stamp>-<stage>``) and the messages; the evaluator reuses this loop."""
    _check_train_config(cfg.train)
    _check_low_res(cfg.data)
    if resume is not None and (Path(resume) / "metrics.json").is_file():  # written only when training ends
        raise UserError(f"{resume} finished training already (it has metrics.json): nothing to resume")
    dist_info = setup_distributed()
    seed_everything(cfg.run.seed + dist_info.rank)
    set_deterministic(cfg.run.deterministic)
    apply_threads(cfg.train.threads)
    data = prepare_data(cfg.data, progress=progress and dist_info.is_main)
    model = build_classifier(cfg, data)  # before the run directory exists: a bad model name leaves nothing behind
    if len(data.splits["val"]) == 0:
        _check_no_val_config(cfg)
    run = open_run(resume, data.manifest["hash"]) if resume else create_run(cfg, stage, dist_info.is_main)
    if dist_info.is_main and not resume:
        write_manifest(data.manifest, run.file("manifest.json"))
        run.write_json("normalization.json", data.normalization.to_dict())
    trainer = ClassifierTrainer(cfg, data, run, dist_info, model, progress, stage)
    if resume:
        trainer.restore_latest()
    trainer.fit()
    return run.path


def _check_train_config(train_cfg) -> None:
    check_precision(train_cfg.precision, "train.precision")
    if train_cfg.epochs < 1:
        raise UserError(f"train.epochs must be ≥ 1 (got {train_cfg.epochs})")
    check_optim_config(train_cfg)
    if not 0 <= train_cfg.ema_decay < 1:
        raise UserError(f"train.ema_decay must be in [0, 1) (got {train_cfg.ema_decay})")
    if train_cfg.lookahead_every < 0 or not 0 <= train_cfg.lookahead_decay <= 1:
        raise UserError(f"train.lookahead_every must be ≥ 0 and train.lookahead_decay in [0, 1] "
                        f"(got {train_cfg.lookahead_every}, {train_cfg.lookahead_decay})")


def _check_no_val_config(cfg) -> None:
    """Without a validation split (``data.val_fraction: 0`` and no val folder) nothing can pick a best epoch
    or stop early: say so before training rather than after it."""
    if cfg.train.early_stopping_patience > 0:
        raise UserError("train.early_stopping_patience needs a validation split: set data.val_fraction > 0 "
                        "or train.early_stopping_patience=0")
    if cfg.eval.weights != "last":
        raise UserError("without a validation split there is no best epoch: set eval.weights=last "
                        "(or data.val_fraction > 0)")


def _check_low_res(data_cfg) -> None:
    size, epochs = data_cfg.augment.low_res_size, data_cfg.augment.low_res_epochs
    if size < 0 or epochs < 0 or (size > 0 and size >= data_cfg.image_size):
        raise UserError(f"data.augment.low_res_size must be in (0, data.image_size={data_cfg.image_size}) and "
                        f"low_res_epochs ≥ 0 (got {size} and {epochs})")


class ClassifierTrainer:
    def __init__(self, cfg, data: PreparedData, run: Run, dist_info: DistInfo, model: torch.nn.Module,
                 progress: bool, stage: str = "classifier"):
        self.stage = stage
        self.cfg, self.data, self.run, self.dist, self.progress = cfg, data, run, dist_info, progress
        self.device = pick_device(dist_info)
        self.precision = resolve_precision(cfg.train.precision, self.device, "train.precision")
        self.model = model.to(self.device)
        self._init_model_from_data()
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.train_loader = data.loader("train", cfg.data.batch_size, train=True, augment=cfg.data.augment,
                                        seed=cfg.run.seed, rank=dist_info.rank, world_size=dist_info.world_size,
                                        drop_last=len(data.splits["train"]) >= 2 * cfg.data.batch_size,
                                        channels_last=cfg.train.channels_last)
        self.val_loader = data.loader("val", max(cfg.data.batch_size, 512), channels_last=cfg.train.channels_last) \
            if len(data.splits["val"]) else None  # None: trained on every training image, no per-epoch val
        self.total_steps = cfg.train.epochs * len(self.train_loader)
        self.optimizer = build_optimizer(self.model, cfg.train)
        self.schedule = build_schedule(self.optimizer, cfg.train, self.total_steps)
        self.ema = EMA(self.model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
        self.lookahead = Lookahead(self.model, cfg.train.lookahead_every, cfg.train.lookahead_decay,
                                   self.total_steps) if cfg.train.lookahead_every > 0 else None
        self.wrapped = self._wrap_ddp(self.model)
        self.state = TrainingState()
        self.guard = NonFiniteGuard(self.stage, cfg.train.skip_bad_batches, run.logger)
        sample = next(iter(data.loader("train", 8)))[0].to(self.device)
        check_batch_fits(self.model, sample, cfg.data.batch_size, self.device, self.stage)
        self.tensorboard = self._open_tensorboard()

    def _init_model_from_data(self) -> None:
        """Models with a data-derived initialisation (airbench's whitening stem) get a seeded random sample
        of as many training images as they ask for in ``init_images`` (:func:`init_sample`); a resumed run
        overwrites the result with its saved weights."""
        init = getattr(self.model, "init_from_data", None)
        if init is not None:
            images, _ = init_sample(self.data, self.model.init_images, self.cfg.run.seed)
            init(images.to(self.device))

    def _wrap_ddp(self, model):
        if not self.dist.enabled:
            return model
        ids = [self.dist.local_rank] if self.device.type == "cuda" else None
        # a model that freezes parameters mid-run (start_epoch) leaves them without gradients in later epochs
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                         find_unused_parameters=hasattr(model, "start_epoch"))

    def _open_tensorboard(self):
        if not (self.cfg.train.tensorboard and self.dist.is_main):
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.run.file("tensorboard")))

    # ---- the loop -------------------------------------------------------------------------
    def fit(self) -> None:
        start_epoch = self.state.epoch
        self.run.logger.info("training %s for %d epochs (%d steps) on %s", self.cfg.model.name,
                             self.cfg.train.epochs, self.total_steps, compute_line(self.device, self.precision))
        if self.dist.is_main:
            self.run.write_json("compute.json", compute_record(self.device, self.precision,
                                                               self.cfg.train.channels_last))
        for epoch in range(start_epoch, self.cfg.train.epochs):
            train_metrics = self._train_epoch(epoch)
            val_loss, val_acc = self._validate() if self.val_loader is not None else (None, None)
            self._end_epoch(epoch, train_metrics, val_loss, val_acc)
            if self._should_stop_early():
                self.run.logger.info("early stopping after epoch %d (no val improvement for %d epochs)",
                                     epoch + 1, self.state.epochs_without_improvement)
                break
        self._finish()

    def _train_epoch(self, epoch: int) -> dict:
        self.wrapped.train()
        epoch_hook = getattr(self.model, "start_epoch", None)  # per-epoch model schedule (airbench's stem bias)
        if epoch_hook is not None:
            epoch_hook(epoch)
        self.train_loader.set_epoch(epoch)
        totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count
        bar = tqdm(self.train_loader, desc=f"epoch {epoch + 1}/{self.cfg.train.epochs}", leave=False,
                   disable=not (self.progress and self.dist.is_main) or None, mininterval=1.0)
        started = time.perf_counter()
        for images, labels in bar:
            loss, correct = self._train_step(images.to(self.device, non_blocking=True), labels.to(self.device))
            if math.isnan(loss):  # a skipped bad batch
                continue
            totals += torch.tensor([loss * len(labels), correct, len(labels)], dtype=torch.float64)
        elapsed = time.perf_counter() - started
        totals = all_reduce_sum(totals.to(self.device), self.dist).cpu()
        self.state.train_seconds += elapsed
        return {"train_loss": float(totals[0] / totals[2]), "train_acc": float(totals[1] / totals[2]),
                "epoch_seconds": elapsed, "images_per_s": float(totals[2]) / elapsed}

    def _train_step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
        with autocast_context(self.device, self.precision.precision):
            logits = self.wrapped(images)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.cfg.train.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if not self.guard.batch_is_usable(loss, self.model.parameters(), self.state.step, self.state.epoch + 1):
            self.optimizer.zero_grad(set_to_none=True)
            return float("nan"), 0
        self.optimizer.step()
        self.schedule.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.state.step += 1
        if self.lookahead is not None:
            self.lookahead.after_step(self.model, self.state.step)
        return float(loss.detach()), int((logits.argmax(1) == labels).sum())

    def _validate(self) -> tuple[float, float]:
        model = self.ema.model if self.ema is not None else self.model
        logits, labels = predict_logits(model, self.val_loader, self.device, self.precision.precision)
        logits_t, labels_t = torch.from_numpy(logits), torch.from_numpy(labels)
        return float(F.cross_entropy(logits_t, labels_t)), float((logits_t.argmax(1) == labels_t).float().mean())

    def _end_epoch(self, epoch: int, train_metrics: dict, val_loss: float | None, val_acc: float | None) -> None:
        self.state.epoch = epoch + 1
        record = {"epoch": epoch + 1, "step": self.state.step, **train_metrics, "val_loss": val_loss,
                  "val_acc": val_acc, "lr": self.optimizer.param_groups[0]["lr"],
                  "train_seconds": self.state.train_seconds}
        self.state.history.append(record)
        improved = val_acc is not None and val_acc > self.state.best_metric
        if improved:
            self.state.best_metric, self.state.best_epoch = val_acc, epoch + 1
            self.state.epochs_without_improvement = 0
        elif val_acc is not None:  # without a val split nothing improves or stalls
            self.state.epochs_without_improvement += 1
        if not self.dist.is_main:
            return
        val_text = f"val loss {val_loss:.4f} acc {val_acc:.4f}" if val_acc is not None else "no val split"
        self.run.logger.info("epoch %d: train loss %.4f acc %.4f | %s | %.0f img/s", epoch + 1,
                             record["train_loss"], record["train_acc"], val_text, record["images_per_s"])
        with open(self.run.file("metrics.jsonl"), "a") as stream:
            stream.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s"):
                if record[key] is not None:
                    self.tensorboard.add_scalar(key, record[key], epoch + 1)
        if improved:
            save_weights(self._eval_model(), self.run.file("best.safetensors"), self.model.config)
        self._save_training_state()

    def _should_stop_early(self) -> bool:
        patience = self.cfg.train.early_stopping_patience
        return patience > 0 and self.state.epochs_without_improvement >= patience

    def _eval_model(self) -> torch.nn.Module:
        return self.ema.model if self.ema is not None else self.model

    def _finish(self) -> None:
        if not self.dist.is_main:
            return
        save_weights(self._eval_model(), self.run.file("last.safetensors"), self.model.config)
        summary = write_curve_artefacts(self.state.history, self.run.path)
        last = self.state.history[-1]
        has_val = self.val_loader is not None
        self.run.write_json("metrics.json", {
            "stage": self.stage, "epochs": self.state.epoch, "steps": self.state.step,
            "best_epoch": self.state.best_epoch if has_val else None,
            "best_val_acc": self.state.best_metric if has_val else None,
            "final_val_acc": last["val_acc"], "final_train_loss": last["train_loss"], "final_val_loss": last["val_loss"],
            "train_seconds": self.state.train_seconds, "overfitting": summary["overfitting"],
            "overfitting_reason": summary["overfitting_reason"]})
        if self.tensorboard is not None:
            self.tensorboard.close()
        if has_val:
            self.run.logger.info("best val acc %.4f at epoch %d; %.1f s of training", self.state.best_metric,
                                 self.state.best_epoch, self.state.train_seconds)
        else:
            self.run.logger.info("no val split: last weights only; %.1f s of training", self.state.train_seconds)

    # ---- checkpoints ----------------------------------------------------------------------
    def _save_training_state(self) -> None:
        state = {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
            "lookahead": self.lookahead.state_dict() if self.lookahead else None,
            "rng": rng_state(), "trainer": self.state.__dict__.copy(),
        }
        folder = self.run.file("checkpoints")
        save_state(state, folder / f"state-{self.state.epoch:05d}.pt")
        for old in sorted(folder.glob("state-*.pt"))[:-max(1, self.cfg.train.keep_checkpoints)]:
            old.unlink()

    def restore_latest(self) -> None:
        """Load the newest readable training state; a corrupt newest file falls back to the previous."""
        candidates = sorted(self.run.file("checkpoints").glob("state-*.pt"), reverse=True)
        if not candidates:
            raise UserError(f"nothing to resume in {self.run.path}: no checkpoints/state-*.pt")
        for path in candidates:
            try:
                state = load_state(path)
            except UserError as err:
                self.run.logger.warning("skipping unreadable checkpoint %s (%s)", path.name, err)
                continue
            self._load(state)
            self.run.logger.info("resumed from %s (epoch %d, step %d)", path.name, self.state.epoch, self.state.step)
            return
        raise UserError(f"no readable training state in {self.run.file('checkpoints')}")

    def _load(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        if self.lookahead is not None and state.get("lookahead") is not None:
            self.lookahead.load_state_dict(state["lookahead"])
        restore_rng_state(state["rng"])
        self.state = TrainingState(**state["trainer"])
        self._truncate_metrics_log(self.state.epoch)

    def _truncate_metrics_log(self, epochs: int) -> None:
        """Drop log lines of epochs after the checkpoint (they will be recomputed)."""
        path = self.run.file("metrics.jsonl")
        if self.dist.is_main and path.is_file():
            lines = [line for line in path.read_text().splitlines() if json.loads(line)["epoch"] <= epochs]
            path.write_text("".join(line + "\n" for line in lines))
