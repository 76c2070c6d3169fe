"""The GAN's losses and its two optimizer steps (hinge loss, as in SNGAN / BigGAN).

The critic is the pixel-space projection discriminator plus, optionally, a head reading the frozen
classifier's feature map (Projected GAN); both are trained with the hinge loss, their losses
summed with the head's weight. The generator's loss is −D(G(z, c)) over the same heads, plus an
optional guidance loss from the frozen classifier on its (un-augmented) images:

* ``class``: cross-entropy of the classifier's logits against the asked-for class;
* ``embedding``: 1 − cos(embedding of the generated image, the conditioning embedding).

Images are (N, C, S, S) in [-1, 1]; the frozen encoder takes them as [0, 1] floats.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visrep.representations.conditions import pooled_embedding
from visrep.inference.autocast import autocast_context
from visrep.training.diffaugment import diff_augment


class Critic(nn.Module):
    """Pixel discriminator + optional projected head; ``forward`` → {"pixel": (N,), "projected": (N,)}."""

    def __init__(self, discriminator: nn.Module, head: nn.Module | None = None, head_layer: str | None = None):
        super().__init__()
        self.discriminator, self.head, self.head_layer = discriminator, head, head_layer

    def forward(self, images: Tensor, condition: Tensor | None, encoder=None, grad_to_images: bool = True
                ) -> dict[str, Tensor]:
        logits = {"pixel": self.discriminator(images, condition)}
        if self.head is not None:
            with torch.set_grad_enabled(grad_to_images and torch.is_grad_enabled()):
                features = encoder.forward_intermediates((images + 1) / 2, [self.head_layer])[1][self.head_layer]
            logits["projected"] = self.head(features, condition)
        return logits


class CriticPair(nn.Module):
    """The critic on a real and a fake batch in one forward: under DistributedDataParallel a module
    must run once per backward (a parameter used twice within one forward is fine), and the real and
    fake batches stay apart (the minibatch statistics of the discriminator see one kind at a time)."""

    def __init__(self, critic: Critic):
        super().__init__()
        self.critic = critic

    def forward(self, real: Tensor, fake: Tensor, condition: Tensor | None, encoder=None
                ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        return (self.critic(real, condition, encoder, grad_to_images=False),
                self.critic(fake, condition, encoder, grad_to_images=False))


@dataclass
class GanStepper:
    """What both steps need; built once by the GAN loop.

    ``generator`` and ``critic`` are the bare networks; ``generator_step`` and ``critic_step`` what
    the two backward passes run through: the generator and a :class:`CriticPair`, each wrapped in
    DistributedDataParallel under torchrun (so each step's gradients are averaged over the ranks)."""
    generator: nn.Module
    critic: Critic
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    encoder: nn.Module | None  # the frozen classifier (projected head, guidance)
    mode: str  # class | embedding | none
    layer: str  # the embedding layer (embedding guidance)
    policies: tuple[str, ...]  # DiffAugment
    head_weight: float
    guidance_weight: float
    precision: str  # fp32 | bf16 | fp16
    channels_last: bool = False
    mode_seeking_weight: float = 0.0
    generator_step: nn.Module | None = None  # default: the generator
    critic_step: nn.Module | None = None  # default: CriticPair(critic)
    scaler: object | None = None  # fp16's loss scaler (visrep.training.loss_scale); None: plain backward

    def __post_init__(self):
        self.generator_step = self.generator_step if self.generator_step is not None else self.generator
        self.critic_step = self.critic_step if self.critic_step is not None else CriticPair(self.critic)

    def backward(self, loss: Tensor) -> None:
        if self.scaler is not None:
            self.scaler.backward(loss)
        else:
            loss.backward()

    def augment(self, images: Tensor) -> Tensor:
        images = diff_augment(images, self.policies)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def latents(self, batch: int, device: torch.device) -> Tensor:
        return torch.randn(batch, self.generator.latent_dim, device=device)


def hinge_discriminator_loss(real: Tensor, fake: Tensor) -> Tensor:
    return F.relu(1.0 - real.float()).mean() + F.relu(1.0 + fake.float()).mean()


def weighted(losses: dict[str, Tensor], head_weight: float) -> Tensor:
    return sum(loss * (head_weight if name == "projected" else 1.0) for name, loss in losses.items())


def discriminator_backward(step: GanStepper, real: Tensor, condition: Tensor | None) -> dict[str, Tensor]:
    """Hinge loss on (real, fake) with fresh critic gradients; returns the numbers to log (and the loss)."""
    with torch.no_grad(), autocast_context(real.device, step.precision):
        fake = step.generator(step.latents(len(real), real.device), condition).float()
    step.opt_d.zero_grad(set_to_none=True)
    with autocast_context(real.device, step.precision):
        real_logits, fake_logits = step.critic_step(step.augment(real), step.augment(fake), condition, step.encoder)
    losses = {name: hinge_discriminator_loss(real_logits[name], fake_logits[name]) for name in real_logits}
    loss = weighted(losses, step.head_weight)
    step.backward(loss)
    record = {"d_loss": loss, "d_real": real_logits["pixel"].float().mean(), "d_fake": fake_logits["pixel"].float().mean()}
    if "projected" in losses:
        record["d_loss_projected"] = losses["projected"]
    return record


def generator_backward(step: GanStepper, condition: Tensor | None, batch: int, device: torch.device
                       ) -> dict[str, Tensor]:
    """−D(G(z, c)) (+ guidance) with fresh generator gradients; the critic gets none (it runs bare, outside
    DistributedDataParallel: its frozen parameters take no part in this backward)."""
    step.critic.requires_grad_(False)
    try:
        step.opt_g.zero_grad(set_to_none=True)
        z = step.latents(batch, device)
        if step.mode_seeking_weight > 0 and condition is not None:
            condition = paired_conditions(condition)
        with autocast_context(device, step.precision):
            fake = step.generator_step(z, condition)
            logits = step.critic(step.augment(fake.float()), condition, step.encoder, grad_to_images=True)
        adversarial = weighted({name: -value.float().mean() for name, value in logits.items()}, step.head_weight)
        record = {"g_loss": adversarial}
        loss = adversarial
        if step.mode_seeking_weight > 0 and condition is not None:
            record["mode_seeking"] = mode_seeking_loss(fake.float(), z)
            loss = loss + step.mode_seeking_weight * record["mode_seeking"]
        if step.guidance_weight > 0:
            record["guidance"] = guidance_loss(step, fake.float(), condition)
            loss = loss + step.guidance_weight * record["guidance"]
        step.backward(loss)
        record["loss"] = loss
        return record
    finally:
        step.critic.requires_grad_(True)


def paired_conditions(condition: Tensor) -> Tensor:
    """The batch's first half of conditions, twice: images i and i + B/2 share a condition, for the
    mode-seeking loss (an odd last row keeps its own)."""
    half = len(condition) // 2
    return torch.cat([condition[:half], condition[:half], condition[2 * half:]])


def mode_seeking_loss(fake: Tensor, z: Tensor) -> Tensor:
    """MSGAN (Mao et al. 2019): 1 / (mean |G(z1, c) − G(z2, c)| / mean |z1 − z2|), over pairs sharing a
    condition. A conditional generator that ignores z (one image per class) makes it large."""
    half = len(z) // 2
    image_distance = (fake[:half] - fake[half:2 * half]).abs().mean()
    latent_distance = (z[:half] - z[half:2 * half]).abs().mean()
    return 1.0 / (image_distance / latent_distance + 1e-5)


def guidance_loss(step: GanStepper, fake: Tensor, condition: Tensor) -> Tensor:
    """The frozen classifier's judgement of generated images (N, C, S, S) in [-1, 1] against the condition."""
    if step.mode == "class":
        logits = step.encoder((fake + 1) / 2)
        return F.cross_entropy(logits, condition)
    features = step.encoder.forward_intermediates((fake + 1) / 2, [step.layer])[1][step.layer]
    return 1.0 - (pooled_embedding(features) * condition).sum(1).mean()
