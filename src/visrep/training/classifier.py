"""Classifier training: config → data → model → explicit loop → checkpoints and curves.

The loop is written out in :func:`train_classifier` (nanoGPT/EDM style), over parts any loop can
use: the run context (seeds, threads, precision, run directory), the checkpointer (exact resume),
the metrics logger and the non-finite guard. The evaluator stage runs this same loop.

Written for DistributedDataParallel: each rank gets its own data shard, only rank 0 writes
files, logs or shows progress, and nothing lives in module-level state.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from visrep.config import ClassifierConfig
from visrep.data.batching import keeps_last_batch
from visrep.data.dataset import BatchLoader
from visrep.data.prepare import PreparedData
from visrep.data.transforms import Normalization
from visrep.errors import UserError
from visrep.hardware.distributed import all_reduce_sum, broadcast_from_main, launched_info
from visrep.hardware.precision import check_precision
from visrep.inference.predict import predict_logits
from visrep.models import create_model
from visrep.models.pretrained import PretrainedFile, describe_file
from visrep.storage import save_weights
from visrep.training.checkpointer import Checkpointer
from visrep.training.context import RunContext
from visrep.training.curves import write_curve_artefacts
from visrep.training.defaults import fill_epochs
from visrep.training.finetune import backbone_parameters, fill_head_epochs, set_phase
from visrep.training.ema import EMA
from visrep.training.guards import NonFiniteGuard, check_batch_fits
from visrep.training.lookahead import Lookahead
from visrep.training.loss_scale import LossScaler
from visrep.training.metrics_log import MetricsLogger
from visrep.training.optim import build_optimizer, build_schedule, check_optim_config
from visrep.training.steps import classification_backward

TENSORBOARD_SCALARS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s")


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


@dataclass
class ClassifierLoop:
    """Everything one classifier run trains with, built once by :func:`build_loop`."""
    ctx: RunContext
    stage: str
    model: torch.nn.Module
    wrapped: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    train_loader: object
    val_loader: object | None  # None: trained on every training image, no per-epoch val
    optimizer: torch.optim.Optimizer
    schedule: object
    ema: EMA | None
    lookahead: Lookahead | None
    guard: NonFiniteGuard
    checkpointer: Checkpointer
    log: MetricsLogger
    scaler: LossScaler
    state: TrainingState = field(default_factory=TrainingState)

    @property
    def cfg(self):
        return self.ctx.cfg

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema.model if self.ema is not None else self.model


def build_classifier(cfg: ClassifierConfig, data: PreparedData) -> torch.nn.Module:
    channels, size, _ = data.image_shape
    options = OmegaConf.to_container(cfg.model.options, resolve=True) if OmegaConf.is_config(cfg.model.options) \
        else dict(cfg.model.options)
    if cfg.model.pretrained_path:
        options["pretrained_path"] = cfg.model.pretrained_path
    return create_model(cfg.model.name, num_classes=len(data.class_names), in_channels=channels, image_size=size,
                        **options)


def train_classifier(cfg: ClassifierConfig, resume: Path | None = None, progress: bool = True, stage: str = "classifier",
                     data: PreparedData | None = None) -> Path:
    """Train per ``cfg`` (or continue the run at ``resume``) and return the run directory.

    ``stage`` names the run (``<stamp>-<stage>``) and the messages; the evaluator reuses this loop.
    ``data`` may pass data already prepared from ``cfg.data`` (the demo prepares it once)."""
    if resume is not None and (Path(resume) / "metrics.json").is_file():  # written only when training ends
        raise UserError(f"{resume} finished training already (it has metrics.json): nothing to resume")
    ctx, model = prepare_classifier(cfg, progress, data)
    if len(ctx.data.splits["val"]) == 0:
        _check_no_val_config(cfg)
    run = ctx.open_run(stage, resume)
    if getattr(model, "pretrained", None) is not None and ctx.is_main:
        run.write_json("pretrained.json", model.pretrained)
        run.logger.info("pretrained: %d tensors from %s%s", model.pretrained["tensors_loaded"], model.pretrained["file"],
                        f"; a new head ({model.num_classes} classes, the file's "
                        f"{model.pretrained['file_classes']})" if model.pretrained["new_head"] else "")
    loop = build_loop(ctx, model, stage)
    ctx.seed_rank_streams()
    if resume:
        loop.state = TrainingState(**loop.checkpointer.restore_latest()["trainer"])
        loop.log.truncate("epoch", loop.state.epoch)
        run.logger.info("resumed at epoch %d, step %d", loop.state.epoch, loop.state.step)
    run.logger.info("training %s for %d epochs (%d steps) on %s", cfg.model.name, cfg.train.epochs,
                    cfg.train.epochs * len(loop.train_loader), ctx.record_compute(cfg.train.channels_last))
    for epoch in range(loop.state.epoch, cfg.train.epochs):
        train_metrics = train_epoch(loop, epoch)
        val_loss, val_acc = _validate_on_main(loop)
        end_epoch(loop, epoch, train_metrics, val_loss, val_acc)
        if _should_stop_early(loop):
            run.logger.info("early stopping after epoch %d (no val improvement for %d epochs)", epoch + 1,
                            loop.state.epochs_without_improvement)
            break
    finish(loop)
    return run.path


def prepare_classifier(cfg: ClassifierConfig, progress: bool = True, data: PreparedData | None = None
                       ) -> tuple[RunContext, torch.nn.Module]:
    """Checks, data (with a pretrained file's normalisation and size), the derived schedule and the model, before
    any run directory exists (a bad model name leaves nothing behind); what training and --lr-find share."""
    _check_train_config(cfg.train)
    if cfg.data.image_size is not None:
        _check_low_res(cfg.data)  # before minutes of decoding, when the size is known already
    say = print if launched_info().is_main else (lambda line: None)  # under torchrun, rank 0 says it once
    pretrained = _pretrained_size(cfg, say) if cfg.model.pretrained_path else None  # a resumed run reads it too
    ctx = RunContext.prepare(cfg, progress, data)
    if pretrained is not None and cfg.model.pretrained_normalization == "auto":
        ctx.data = _with_weights_normalization(ctx.data, pretrained, say)
    _match_image_size(cfg.data, ctx.data)
    _check_low_res(cfg.data)  # again: an unset data.image_size is known only now
    if cfg.train.epochs is None:  # before the run directory: its config.yaml records the number chosen
        fill_epochs(cfg.train, len(training_batches(ctx)), say=say)
    fill_head_epochs(cfg.train, bool(cfg.model.pretrained_path), say=say)
    return ctx, build_classifier(cfg, ctx.data)


def training_batches(ctx: RunContext) -> BatchLoader:
    """This process's training batches: shuffled, augmented, the short last batch kept unless it is a sliver."""
    cfg, data, dist = ctx.cfg, ctx.data, ctx.dist
    shard = len(data.splits["train"]) // dist.world_size
    return data.loader("train", cfg.data.batch_size, train=True, augment=cfg.data.augment, seed=cfg.run.seed,
                       rank=dist.rank, world_size=dist.world_size,
                       drop_last=not keeps_last_batch(shard, cfg.data.batch_size), channels_last=cfg.train.channels_last)


def _check_train_config(train_cfg) -> None:
    check_precision(train_cfg.precision, "train.precision")
    if train_cfg.epochs is not None and train_cfg.epochs < 1:
        raise UserError(f"train.epochs must be ≥ 1 (got {train_cfg.epochs})")
    check_optim_config(train_cfg)
    if not 0 <= train_cfg.ema_decay < 1:
        raise UserError(f"train.ema_decay must be in [0, 1) (got {train_cfg.ema_decay})")
    if train_cfg.lookahead_every < 0 or not 0 <= train_cfg.lookahead_decay <= 1:
        raise UserError(f"train.lookahead_every must be ≥ 0 and train.lookahead_decay in [0, 1] "
                        f"(got {train_cfg.lookahead_every}, {train_cfg.lookahead_decay})")


def _check_no_val_config(cfg: ClassifierConfig) -> None:
    """Without a validation split (``data.val_fraction: 0`` and no val folder) nothing can pick a best epoch
    or stop early: say so before training rather than after it."""
    if cfg.train.early_stopping_patience > 0:
        raise UserError("train.early_stopping_patience needs a validation split: set data.val_fraction > 0 "
                        "or train.early_stopping_patience=0")
    if cfg.eval.weights != "last":
        raise UserError("without a validation split there is no best epoch: set eval.weights=last "
                        "(or data.val_fraction > 0)")


def _pretrained_size(cfg: ClassifierConfig, say=print) -> PretrainedFile:
    """What the pretrained file expects; an unset data.image_size becomes the weights' own resolution."""
    info = describe_file(cfg.model.pretrained_path)
    if cfg.data.image_size is None:
        cfg.data.image_size = info.image_size
        say(f"data.image_size not given: {info.image_size} px (the resolution the pretrained weights were "
            f"trained at; set data.image_size to choose)")
    return info


def _with_weights_normalization(data: PreparedData, info: PretrainedFile, say=print) -> PreparedData:
    """The data normalised with the statistics the weights were trained with (saved as the run's
    normalization.json): a copy, since data handed in by the pipeline also serves other stages."""
    normalization = Normalization(*info.normalization_for(data.image_shape[0]))
    splits = {name: copy.copy(split) for name, split in data.splits.items()}
    for split in splits.values():
        split.normalization = normalization
    say(f"normalisation: the pretrained weights' own ({'ImageNet' if info.kind == 'imagenet' else 'their run'}'s "
        f"mean and std), not the training split's (model.pretrained_normalization=data to choose that)")
    return dataclasses.replace(data, normalization=normalization, splits=splits)


def _match_image_size(data_cfg, data: PreparedData) -> None:
    """Data handed in must be the config's: its size fills an unset data.image_size (saved in config.yaml)."""
    channels, size, _ = data.image_shape
    if data_cfg.image_size is None:
        data_cfg.image_size = size
    if size != data_cfg.image_size or (data_cfg.channels is not None and channels != data_cfg.channels):
        raise UserError(f"the prepared data is {channels}x{size}x{size} but the config asks for "
                        f"data.image_size={data_cfg.image_size}, data.channels={data_cfg.channels}")


def _check_low_res(data_cfg) -> None:
    size, epochs = data_cfg.augment.low_res_size, data_cfg.augment.low_res_epochs
    if size < 0 or epochs < 0 or (size > 0 and size >= data_cfg.image_size):
        raise UserError(f"data.augment.low_res_size must be in (0, data.image_size={data_cfg.image_size}) and "
                        f"low_res_epochs ≥ 0 (got {size} and {epochs})")


def build_loop(ctx: RunContext, model: torch.nn.Module, stage: str) -> ClassifierLoop:
    cfg, data, dist = ctx.cfg, ctx.data, ctx.dist
    model = model.to(ctx.device)
    init_model_from_data(model, data, cfg.run.seed, ctx.device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_loader = training_batches(ctx)
    val_loader = data.loader("val", max(cfg.data.batch_size, 512), channels_last=cfg.train.channels_last) \
        if len(data.splits["val"]) else None
    total_steps = cfg.train.epochs * len(train_loader)
    slow = backbone_parameters(model) if cfg.model.pretrained_path else None  # fine-tuning: the backbone slower
    optimizer = build_optimizer(model, cfg.train, slow, cfg.train.backbone_lr_scale)
    schedule = build_schedule(optimizer, cfg.train, total_steps)
    ema = EMA(model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
    lookahead = Lookahead(model, cfg.train.lookahead_every, cfg.train.lookahead_decay, total_steps) \
        if cfg.train.lookahead_every > 0 else None
    # a model that freezes parameters mid-run (start_epoch) leaves them without gradients in later epochs
    wrapped = ctx.ddp(model, find_unused_parameters=hasattr(model, "start_epoch") or bool(cfg.train.head_epochs))
    guard = NonFiniteGuard(stage, cfg.train.skip_bad_batches, ctx.run.logger, dist)
    check_batch_fits(model, next(iter(data.loader("train", 8)))[0].to(ctx.device), cfg.data.batch_size, ctx.device,
                     stage)
    scaler = LossScaler(ctx.device, ctx.precision.precision)
    checkpointer = Checkpointer(ctx.run.file("checkpoints"), cfg.train.keep_checkpoints, ctx.run.logger, dist, model=model,
                                optimizer=optimizer, schedule=schedule, ema=ema, lookahead=lookahead,
                                scaler=scaler.checkpointed())
    log = MetricsLogger(ctx.run, ctx.is_main, cfg.train.tensorboard, ctx.progress, TENSORBOARD_SCALARS)
    return ClassifierLoop(ctx, stage, model, wrapped, train_loader, val_loader, optimizer, schedule, ema, lookahead,
                          guard, checkpointer, log, scaler)


def init_model_from_data(model: torch.nn.Module, data: PreparedData, seed: int, device: torch.device) -> None:
    """Models with a data-derived initialisation (airbench's whitening stem) get a seeded random sample
    of as many training images as they ask for in ``init_images`` (:func:`init_sample`); a resumed run
    overwrites the result with its saved weights."""
    init = getattr(model, "init_from_data", None)
    if init is not None:
        images, _ = init_sample(data, model.init_images, seed)
        init(images.to(device))


# ---- the loop's steps -----------------------------------------------------------------------
def train_epoch(loop: ClassifierLoop, epoch: int) -> dict:
    loop.wrapped.train()
    set_phase(loop.model, epoch, loop.cfg.train.head_epochs or 0)  # fine-tuning: the new head alone first
    epoch_hook = getattr(loop.model, "start_epoch", None)  # per-epoch model schedule (airbench's stem bias)
    if epoch_hook is not None:
        epoch_hook(epoch)
    loop.train_loader.set_epoch(epoch)
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count
    started = time.perf_counter()
    for images, labels in loop.log.bar(loop.train_loader, f"epoch {epoch + 1}/{loop.cfg.train.epochs}"):
        loss, correct = train_step(loop, images.to(loop.ctx.device, non_blocking=True), labels.to(loop.ctx.device))
        if math.isnan(loss):  # a skipped bad batch
            continue
        totals += torch.tensor([loss * len(labels), correct, len(labels)], dtype=torch.float64)
    elapsed = time.perf_counter() - started
    totals = all_reduce_sum(totals, loop.ctx.dist)  # on the CPU: float64 has no MPS kernels
    loop.state.train_seconds += elapsed
    return {"train_loss": float(totals[0] / totals[2]), "train_acc": float(totals[1] / totals[2]),
            "epoch_seconds": elapsed, "images_per_s": float(totals[2]) / elapsed}


def train_step(loop: ClassifierLoop, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
    """One optimizer step; (loss, correct), or (nan, 0) for a bad batch the guard lets the run skip."""
    loss, logits = classification_backward(loop.wrapped, loop.optimizer, images, labels, loop.ctx.precision.precision,
                                           loop.cfg.train.label_smoothing, loop.scaler)
    loop.scaler.unscale(loop.optimizer)
    usable = loop.guard.batch_is_usable(loss, loop.scaler.guarded(loop.model.parameters()), loop.state.step,
                                        loop.state.epoch + 1)
    loop.scaler.finish_step(loop.optimizer, usable)
    if not usable:
        loop.optimizer.zero_grad(set_to_none=True)
        return float("nan"), 0
    loop.schedule.step()
    if loop.ema is not None:
        loop.ema.update(loop.model)
    loop.state.step += 1
    if loop.lookahead is not None:
        loop.lookahead.after_step(loop.model, loop.state.step)
    return float(loss.detach()), int((logits.argmax(1) == labels).sum())


def _validate_on_main(loop: ClassifierLoop) -> tuple[float | None, float | None]:
    """Rank 0's validation, on every rank: the best epoch and early stopping must be decided alike (each
    rank's BatchNorm statistics differ a little, and so would its val accuracy)."""
    result = validate(loop) if loop.val_loader is not None and loop.ctx.is_main else (None, None)
    return broadcast_from_main(result, loop.ctx.dist)


def validate(loop: ClassifierLoop) -> tuple[float, float]:
    logits, labels = predict_logits(loop.eval_model, loop.val_loader, loop.ctx.device, loop.ctx.precision.precision)
    logits_t, labels_t = torch.from_numpy(logits), torch.from_numpy(labels)
    return float(F.cross_entropy(logits_t, labels_t)), float((logits_t.argmax(1) == labels_t).float().mean())


def end_epoch(loop: ClassifierLoop, epoch: int, train_metrics: dict, val_loss: float | None,
              val_acc: float | None) -> None:
    """Record the epoch, keep the best weights, checkpoint the training state."""
    state = loop.state
    state.epoch = epoch + 1
    record = {"epoch": epoch + 1, "step": state.step, **train_metrics, "val_loss": val_loss, "val_acc": val_acc,
              "lr": loop.optimizer.param_groups[0]["lr"], "train_seconds": state.train_seconds}
    state.history.append(record)
    improved = val_acc is not None and val_acc > state.best_metric
    if improved:
        state.best_metric, state.best_epoch = val_acc, epoch + 1
        state.epochs_without_improvement = 0
    elif val_acc is not None:  # without a val split nothing improves or stalls
        state.epochs_without_improvement += 1
    if not loop.ctx.is_main:
        loop.checkpointer.save(state.epoch, trainer=state.__dict__.copy())  # gathers this rank's RNG state
        return
    val_text = f"val loss {val_loss:.4f} acc {val_acc:.4f}" if val_acc is not None else "no val split"
    loop.log.log(record, epoch + 1, f"epoch {epoch + 1}: train loss {record['train_loss']:.4f} acc "
                                    f"{record['train_acc']:.4f} | {val_text} | {record['images_per_s']:.0f} img/s")
    if improved:
        save_weights(loop.eval_model, loop.ctx.run.file("best.safetensors"), loop.model.config)
    loop.checkpointer.save(state.epoch, trainer=state.__dict__.copy())


def _should_stop_early(loop: ClassifierLoop) -> bool:
    patience = loop.cfg.train.early_stopping_patience
    return patience > 0 and loop.state.epochs_without_improvement >= patience


def finish(loop: ClassifierLoop) -> None:
    """last.safetensors, curves and metrics.json (written only here: its presence means 'finished')."""
    if not loop.ctx.is_main:
        return
    run, state = loop.ctx.run, loop.state
    save_weights(loop.eval_model, run.file("last.safetensors"), loop.model.config)
    summary = write_curve_artefacts(state.history, run.path)
    last = state.history[-1]
    has_val = loop.val_loader is not None
    run.write_json("metrics.json", {
        "stage": loop.stage, "epochs": state.epoch, "steps": state.step,
        "best_epoch": state.best_epoch if has_val else None,
        "best_val_acc": state.best_metric if has_val else None,
        "final_val_acc": last["val_acc"], "final_train_loss": last["train_loss"], "final_val_loss": last["val_loss"],
        "train_seconds": state.train_seconds, "overfitting": summary["overfitting"],
        "overfitting_reason": summary["overfitting_reason"]})
    loop.log.close()
    if has_val:
        run.logger.info("best val acc %.4f at epoch %d; %.1f s of training", state.best_metric, state.best_epoch,
                        state.train_seconds)
    else:
        run.logger.info("no val split: last weights only; %.1f s of training", state.train_seconds)
