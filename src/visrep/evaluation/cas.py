"""Classification Accuracy Score (Ravuri & Vinyals 2019): train on generated images, test on real ones.

A fresh small classifier learns from generated images and their intended labels only, then is
tested on the real test split. It rewards samples that are both correct and diverse enough to
teach the class boundaries; the same recipe on N real training images gives the reference.
The recipe is fixed (no tuning on the test split): fastcnn, SGD-Nesterov one-cycle, label
smoothing 0.1, random translation, bf16 autocast, max(epochs, enough epochs for 300 steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from visrep.config import TrainConfig
from visrep.data.transforms import augment_batch, compute_normalization, normalize_uint8
from visrep.inference.autocast import autocast_context
from visrep.inference.batches import batched
from visrep.models import create_model
from visrep.training.optim import build_optimizer, build_schedule
from visrep.training.steps import classification_backward


@dataclass(frozen=True)
class CasRecipe:
    epochs: int = 5
    min_steps: int = 300  # small sets train for more epochs: BatchNorm statistics need a few hundred steps
    batch_size: int = 128
    lr: float = 0.2  # peak, one-cycle
    widths: tuple[int, ...] = (32, 64, 128)  # fastcnn stages
    translate: int = 1  # pixels of random shift
    precision: str = "auto"  # the project's policy (visrep.hardware.precision): bf16 only where it is native
    seed: int = 0


def classification_accuracy_score(train_images: torch.Tensor, train_labels: np.ndarray, test_images: torch.Tensor,
                                  test_labels: np.ndarray, num_classes: int, recipe: CasRecipe = CasRecipe(),
                                  progress: bool = False) -> dict:
    """uint8 (N, C, S, S) training images + labels → accuracy on uint8 test images; {"accuracy", ...}.

    ``progress`` shows a bar over the optimizer steps with its time estimate (CAS trains a network:
    minutes on a CPU for thousands of images)."""
    with torch.random.fork_rng():  # leave the caller's random state alone
        torch.manual_seed(recipe.seed)
        model, normalization, epochs = _fit(train_images, torch.as_tensor(train_labels), num_classes, recipe,
                                            progress)
    predicted = _predict(model, test_images, normalization, recipe)
    accuracy = float((predicted == torch.as_tensor(test_labels)).double().mean())
    return {"accuracy": accuracy, "n_train": int(len(train_images)), "n_test": int(len(test_images)),
            "epochs": epochs, "model": f"fastcnn{list(recipe.widths)}"}


def _fit(images: torch.Tensor, labels: torch.Tensor, num_classes: int, recipe: CasRecipe, progress: bool = False):
    channels, size = images.shape[1], images.shape[2]
    normalization = compute_normalization(images.numpy())
    model = create_model("fastcnn", num_classes=num_classes, in_channels=channels, image_size=size,
                         widths=list(recipe.widths))
    steps_per_epoch = max(1, len(images) // recipe.batch_size)
    epochs = max(recipe.epochs, -(-recipe.min_steps // steps_per_epoch))
    train_cfg = TrainConfig(optimizer="sgd", lr=recipe.lr, momentum=0.9, weight_decay=5e-4, schedule="onecycle",
                            warmup_fraction=0.2)
    optimizer = build_optimizer(model, train_cfg)
    schedule = build_schedule(optimizer, train_cfg, epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(recipe.seed)
    model.train()
    bar = tqdm(total=epochs * steps_per_epoch, desc="CAS: training on the generated images", unit="step",
               leave=False, disable=not progress or None, mininterval=1.0)
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for step in range(steps_per_epoch):
            chosen = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
            batch = augment_batch(images[chosen], False, recipe.translate, generator)
            _step(model, optimizer, normalize_uint8(batch, normalization), labels[chosen], recipe.precision)
            schedule.step()
            bar.update()
    bar.close()
    return model.eval(), normalization, epochs


def _step(model, optimizer, inputs: torch.Tensor, targets: torch.Tensor, precision: str) -> None:
    classification_backward(model, optimizer, inputs, targets, precision, label_smoothing=0.1)
    optimizer.step()


@torch.inference_mode()
def _predict(model, images: torch.Tensor, normalization, recipe: CasRecipe, batch_size: int = 1000) -> torch.Tensor:
    predictions = [torch.empty(0, dtype=torch.int64)]  # an empty test set predicts nothing
    for batch in batched(images, batch_size):
        inputs = normalize_uint8(batch, normalization)
        with autocast_context(inputs.device, recipe.precision):
            predictions.append(model(inputs).float().argmax(1))
    return torch.cat(predictions)
