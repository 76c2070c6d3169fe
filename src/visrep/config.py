"""Typed configuration: dataclass schemas, YAML files and dotted command-line overrides.

OmegaConf structured configs validate keys and types against the dataclasses, so a typo
(``data.imgae_size=32``) or a wrong type (``data.image_size=big``) is rejected naming the key.
No code is ever executed from a config file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from visrep.errors import UserError


# ---- value ranges, declared beside each field (``ranged``) and checked when a config loads ---------------
@dataclass(frozen=True)
class Rule:
    test: Callable[[Any], bool]
    expected: str  # what the value must be, for the error line


def rule(check: Rule) -> dict:
    """A dataclass field's metadata carrying its value rule."""
    return {"rule": check}


def ranged(default, check: Rule):
    """A field whose value must pass ``check``: a bad value is one error line before anything runs."""
    return field(default=default, metadata=rule(check))


def optional(check: Rule) -> Rule:
    return Rule(lambda v: v is None or check.test(v), f"{check.expected} (or unset)")


def one_of(*choices: str) -> Rule:
    return Rule(lambda v: v in choices, "one of " + ", ".join(choices))


AT_LEAST_1 = Rule(lambda v: v >= 1, "≥ 1")
POSITIVE = Rule(lambda v: v > 0, "> 0")
NON_NEGATIVE = Rule(lambda v: v >= 0, "≥ 0")
FRACTION = Rule(lambda v: 0 <= v < 1, "in [0, 1)")
UNIT_INTERVAL = Rule(lambda v: 0 <= v <= 1, "in [0, 1]")
DEVICES = ("auto", "cpu", "cuda", "mps")  # as visrep.hardware.distributed.DEVICES (a sibling layer)
DEVICE = one_of(*DEVICES)
CONDITIONING = one_of("class", "embedding", "none")
EMBEDDING_SAMPLER = one_of("gaussian", "kmeans", "learned")
DUPLICATE_POLICIES = ("drop_heldout", "refuse", "keep")  # data.duplicates; here, below the data layer that reads it
INTERVAL = Rule(lambda v: len(v) == 2 and 0 <= v[0] <= v[1] <= 1, "[low, high] with 0 ≤ low ≤ high ≤ 1")


@dataclass
class AugmentConfig:
    flip: bool = False  # random horizontal flip, p = 0.5 per image
    translate: int = 0  # random shift of up to this many pixels in x and y (reflect padding)
    alternate_flip: bool = False  # with flip: each image mirrored on every other epoch, not at random (airbench)
    low_res_size: int = 0  # progressive resizing: train the first low_res_epochs at this size (0 = off) ...
    low_res_epochs: int = 0  # ... then at data.image_size; validation and test always at full size


@dataclass
class DataConfig:
    # digits | mnist | fashionmnist | cifar10 | path to an image folder
    source: str = "digits"
    root: Optional[str] = None  # where torchvision sets' files live (default ~/.cache/visrep-data/<name>)
    download: bool = False  # torchvision sets only; never implied
    # pixels, square output; None: the source's own (digits 8, MNIST 28, CIFAR-10 32), or for a folder
    # the median short side of a sample of its images clamped to 16-64 (printed, and saved in the run)
    image_size: Optional[int] = ranged(None, optional(AT_LEAST_1))
    channels: Optional[int] = None  # 1 or 3; None = the source's own (folders: 3 if any colour image)
    resize: str = "crop"  # crop: short side → size, centre crop | stretch | pad: long side → size, pad
    val_fraction: float = 0.1  # of each class; carved from train when the source has no val split
    test_fraction: float = 0.2  # of each class; carved from train when the source has no test split (recorded)
    seed: int = 0  # split seed (independent of the training seed)
    # corrupt / non-image files in class folders: skip and list (False) or fail (True); so too an unreadable
    # EXIF block (False: decoded unrotated and listed); hidden, stray and twice-linked entries are only listed
    strict: bool = False
    # files with identical decoded pixels in two splits: drop_heldout removes the val/test copies (val/test keeps
    # no image equal to a train image; between val and test, test loses it) | refuse (an error naming both
    # files) | keep (listed only). Copies within one split are always only listed (visrep.data.duplicates)
    duplicates: str = ranged("drop_heldout", one_of(*DUPLICATE_POLICIES))
    cache_dir: Optional[str] = None  # default: $VISREP_CACHE or ~/.cache/visrep
    in_memory: Optional[bool] = None  # None = auto (below memory_limit_gb); false: stream the cache from disk (mmap)
    memory_limit_gb: float = ranged(4.0, POSITIVE)  # decoded size up to which auto keeps a folder dataset in memory
    # None: about a twentieth of the training split, as a power of two within 16-256 (visrep.data.batching;
    # printed, and saved in the run's config.yaml)
    batch_size: Optional[int] = ranged(None, optional(AT_LEAST_1))
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class RunConfig:
    name: Optional[str] = None  # run directory name; default: <timestamp>-<verb>
    root: str = "runs"
    overwrite: bool = False  # replace an existing run directory of the same name
    seed: int = 0  # seeds Python, NumPy and torch
    deterministic: bool = False  # torch.use_deterministic_algorithms + single-threaded reductions


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)


@dataclass
class ModelConfig:
    name: str = "fastcnn"  # see `visrep models`; tv:<arch> for any torchvision classifier
    options: Dict[str, Any] = field(default_factory=dict)  # builder kwargs, e.g. {widths: [32, 64, 64]}
    # a local torchvision/timm state dict or a visrep run's weights (`visrep models` lists what each
    # architecture takes); never downloaded. Fine-tuned at the weights' own resolution unless
    # data.image_size is set (torchvision/timm: 224 px; a visrep run: its image size)
    pretrained_path: Optional[str] = None
    # auto: the statistics the weights were trained with | data: the split's
    pretrained_normalization: str = ranged("auto", one_of("auto", "data"))


@dataclass
class TrainConfig:
    # None: enough for 800 optimizer steps, within 10-60 epochs (visrep.training.defaults; printed and saved)
    epochs: Optional[int] = ranged(None, optional(AT_LEAST_1))
    optimizer: str = "sgd"  # sgd (Nesterov momentum) | adamw | muon (conv filters by Muon, the rest by sgd)
    lr: float = ranged(0.05, POSITIVE)  # peak learning rate
    momentum: float = ranged(0.9, FRACTION)  # sgd momentum / adamw beta1
    # decoupled for adamw; L2 for sgd (BN and biases only with decay_biases)
    weight_decay: float = ranged(5e-4, NON_NEGATIVE)
    decay_biases: bool = False  # decay biases and norm-layer parameters too, by the weights' per-step amount (airbench)
    schedule: str = "onecycle"  # onecycle: linear warmup then linear decay to 0 | cosine: warmup then cosine | constant
    warmup_fraction: float = ranged(0.2, UNIT_INTERVAL)  # of all optimizer steps
    warmup_start_factor: float = 0.0  # lr at step 0, as a fraction of the peak
    final_lr_factor: float = 0.0  # lr at the last step, as a fraction of the peak (onecycle and cosine)
    bias_lr_scale: float = ranged(1.0, POSITIVE)  # lr multiplier for biases and BatchNorm parameters (airbench: 64)
    # muon: step of a filter bank relative to its norm (√out), before the schedule
    muon_lr: float = ranged(0.12, POSITIVE)
    muon_momentum: float = ranged(0.6, FRACTION)  # muon: Nesterov momentum of the filter updates (airbench94_muon: 0.6)
    lookahead_every: int = 0  # steps between lookahead syncs (slow weights ← lerp, fast ← slow); 0 = off
    lookahead_decay: float = 0.95  # per step; the slow weights move by 1 − decay^every · (step/total)^3
    label_smoothing: float = ranged(0.1, FRACTION)
    ema_decay: float = ranged(0.0, FRACTION)  # per step; 0 disables the EMA of weights
    # with model.pretrained_path: epochs training the new head alone (backbone frozen) before the whole
    # network; None: a fifth of the epochs (≥ 1) when fine-tuning, 0 otherwise
    head_epochs: Optional[int] = ranged(None, optional(NON_NEGATIVE))
    # with model.pretrained_path: lr of the pretrained (non-head) parameters, × lr
    backbone_lr_scale: float = ranged(0.1, POSITIVE)
    # auto: bf16 autocast where the CPU runs bf16 natively (AMX / AVX512_BF16) or CUDA supports it,
    # fp32 otherwise; fp16 with a loss scaler on a CUDA GPU without bf16 (`visrep doctor` shows the pick) | fp32 | bf16 | fp16
    precision: str = "auto"
    # faster in fp32 and bf16 for these CNNs (benchmarks/notes/measurements-behind-code-choices.md)
    channels_last: bool = True
    early_stopping_patience: int = 0  # epochs without val improvement before stopping; 0 = never
    keep_checkpoints: int = ranged(2, AT_LEAST_1)  # training-state files kept (newest first)
    skip_bad_batches: int = ranged(0, NON_NEGATIVE)  # isolated NaN/Inf batches skipped before the run stops
    tensorboard: bool = True
    # torch CPU threads; None = the free cores at start-up (visrep.hardware.threads)
    threads: Optional[int] = ranged(None, optional(AT_LEAST_1))
    device: str = ranged("auto", DEVICE)  # auto (CUDA, else CPU; mps only when named, one process) | cpu | cuda | mps


@dataclass
class EvalConfig:
    tta_flip: bool = False  # average logits over the image and its mirror
    tta_translate: int = 0  # also views shifted by ±this many pixels diagonally (weights ½ unshifted, ¼ each)
    weights: str = "best"  # best (best val epoch) | last (end of training: fixed-budget recipes end on their best)
    topk: List[int] = field(default_factory=lambda: [1, 5])
    calibration_bins: int = 15


@dataclass
class ClassifierConfig(Config):
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass
class EmbedOptions:
    # feature-layer names (see the model's feature_layers), or "stages" (every stageK) or "all"
    layers: List[str] = field(default_factory=lambda: ["penultimate"])
    splits: List[str] = field(default_factory=lambda: ["train", "val", "test"])
    pooling: str = "avg"  # avg | max: global → (N, C) | flatten: (N, C·H·W) | spatial: keep (N, C, H, W)
    l2_normalize: bool = False  # unit-length vectors after pooling (spatial: over the whole C·H·W map)
    weights: str = "best"  # best | last checkpoint of the classifier run
    batch_size: int = ranged(512, AT_LEAST_1)  # images per forward pass
    precision: str = "auto"  # auto (as train.precision) | bf16 autocast | fp32
    out: Optional[str] = None  # default: <classifier run>/embeddings
    overwrite: bool = False  # replace a layer's existing embeddings
    allow_partial: bool = False  # embed a run that has not finished training (its mid-training weights)
    kmeans_clusters: int = 100  # k-means centres of the condition bank (capped at the number of train images)
    device: str = ranged("auto", DEVICE)  # auto (CUDA, else CPU; mps only when named) | cpu | cuda | mps


@dataclass
class AnalysisOptions:
    enabled: bool = True
    knn_k: int = 10  # neighbours that vote (cosine similarity, bank = train split)
    probe_c: float = 1.0  # inverse L2 strength of the logistic-regression probe, on standardised features
    probe_max_iter: int = 1000  # lbfgs iterations
    sample_points: int = 5000  # random train points for silhouette and PCA dimensionality (cost O(n²))
    map_points: int = 3000  # test points in the PCA / t-SNE / UMAP maps (t-SNE ≤ 5000 keeps it to seconds)
    retrieval_queries: int = 10  # rows of the retrieval grid (test images, classes in turn)
    retrieval_k: int = 8  # neighbours shown per query (from the train split)
    # near-duplicate images between val/test and train (and inside train), at the deepest analysed layer:
    # cosine ≥ duplicate_min_similarity and ln(1 − cosine) at least duplicate_z robust SDs below that of two
    # train photos of the class (visrep.embeddings.near_duplicates explains and measures the rule)
    near_duplicates: bool = True
    duplicate_min_similarity: float = 0.98  # absolute floor on the cosine similarity
    duplicate_z: float = 4.0  # robust standard deviations (1.4826·MAD of ln distance) below the class median
    seed: int = 0  # subsampling, k-means and t-SNE


@dataclass
class EmbedConfig:
    embed: EmbedOptions = field(default_factory=EmbedOptions)
    analysis: AnalysisOptions = field(default_factory=AnalysisOptions)


@dataclass
class GenerativeEvalOptions:
    evaluator: Optional[str] = None  # evaluator run directory (`visrep train evaluator`)
    fake: Optional[str] = None  # folder of images | .npz | generator run directory
    real: str = "test"  # val | test of the evaluator's data, or <data source or run dir>:<val|test>
    n: Optional[int] = None  # images per side (equal for real and fake); None = min(max_n, available)
    max_n: int = 10000
    weights: Optional[str] = None  # evaluator checkpoint: best | last; None = the one its evaluator.json records
    # evaluator forward: auto (as train.precision) | fp32 | bf16 (faster, features rounded to 8 bits)
    precision: str = "auto"
    batch_size: int = ranged(500, AT_LEAST_1)  # images per evaluator forward
    prdc_k: int = 5  # nearest neighbours for precision/recall/density/coverage
    cas: bool = True  # Classification Accuracy Score (trains a small classifier on the fakes)
    cas_epochs: int = 5
    cas_min_steps: int = 300  # optimizer steps at least (small N: more epochs; BatchNorm needs them)
    cas_widths: List[int] = field(default_factory=lambda: [32, 64, 128])  # fastcnn stages of the CAS classifier
    memorisation_bank: Optional[int] = None  # training images searched; None = the whole train split
    memorisation_quantile: float = 0.01  # of held-out real distances: the "close" threshold
    memorisation_flag_fraction: float = 0.05  # flag when more generated images than this are that close
    floor: bool = True  # real-vs-real floor (train subset vs the real reference) for every metric
    cache: bool = True  # keep the real side and the floor in <evaluator run>/scoring_cache/ for later scorings
    in_loop: Optional[str] = None  # conditioning classifier run: adds "in-loop, optimistic" numbers
    inception_weights: Optional[str] = None  # local Inception (torch-fidelity) weights; never downloaded
    grid_per_class: int = 8  # real and generated images per class in the side-by-side grid
    seed: int = 0  # the images drawn per side, pairings, CAS
    # torch CPU threads; None = the free cores at start-up (visrep.hardware.threads)
    threads: Optional[int] = ranged(None, optional(AT_LEAST_1))
    device: str = ranged("auto", DEVICE)  # auto (CUDA, else CPU; mps only when named, one process) | cpu | cuda | mps


@dataclass
class GenerativeEvalConfig:
    run: RunConfig = field(default_factory=RunConfig)
    generative: GenerativeEvalOptions = field(default_factory=GenerativeEvalOptions)


@dataclass
class LearnedSamplerOptions:
    """RCG's representation diffusion model (visrep.representations.learned_sampler), fitted on the training
    embeddings when embedding_sampler is learned."""
    steps: int = ranged(2000, AT_LEAST_1)  # AdamW steps
    batch_size: int = ranged(256, AT_LEAST_1)
    lr: float = ranged(1e-3, POSITIVE)
    width: int = ranged(256, AT_LEAST_1)  # hidden units per residual block
    blocks: int = ranged(3, AT_LEAST_1)
    sample_steps: int = ranged(50, AT_LEAST_1)  # DDIM steps per draw
    seed: int = 0


@dataclass
class GanOptions:
    conditioning_run: Optional[str] = None  # the trained classifier run whose representations condition and guide
    # class (label) | embedding (classifier embedding of a real image) | none
    conditioning: str = ranged("class", CONDITIONING)
    # classifier layer of the embedding conditions (maps are average-pooled): a name, or best (the embeddings
    # analysis's best val linear probe); penultimate, what the classifier's head reads, needs no analysis
    layer: str = "penultimate"
    weights: Optional[str] = None  # classifier checkpoint: best | last; None = the one it saved as final
    # the embeddings stage's folder its training embeddings and bank are read from when they match (None:
    # <conditioning_run>/embeddings); otherwise computed with the same code and kept in this run
    embeddings: Optional[str] = None
    # embedding: a condition's real images come from its k nearest training neighbours (IC-GAN)
    knn_k: int = ranged(20, AT_LEAST_1)
    latent_dim: int = ranged(128, AT_LEAST_1)  # z ~ N(0, I)
    # resnet (SNGAN/BigGAN residual blocks) | dcgan (SNGAN's standard CNN: plain convs)
    architecture: str = ranged("resnet", one_of("resnet", "dcgan"))
    # generator channels per block (dcgan: at full resolution, doubled per halving)
    g_width: int = ranged(128, AT_LEAST_1)
    # discriminator channels per block (dcgan: at full resolution, doubled per halving)
    d_width: int = ranged(128, AT_LEAST_1)
    condition_dim: int = ranged(128, AT_LEAST_1)  # class table row / embedding projection fed to conditional BatchNorm
    diffaugment: List[str] = field(default_factory=lambda: ["color", "translation", "cutout"])  # [] = off
    projected_head: bool = False  # extra discriminator head on the frozen classifier's features (Projected GAN)
    projected_layer: str = "stage2"  # the classifier layer that head reads, at the classifier's resolution
    # weight of the head's hinge loss beside the pixel discriminator's
    projected_weight: float = ranged(1.0, NON_NEGATIVE)
    # frozen-classifier loss on generated images: class CE | 1 − cos(embedding)
    guidance_weight: float = ranged(0.0, NON_NEGATIVE)
    # mode-seeking loss (MSGAN): pairs sharing a condition must differ as their z do; 0 = off (none mode: unused)
    # chosen on MNIST val at 2 min: 0.1 / 0.3 / 0.5 / 1.0 (notes/2026-11-30-gan.md)
    mode_seeking_weight: float = ranged(0.3, NON_NEGATIVE)
    # sampled embeddings for unconditional generation: gaussian (per class) | kmeans | learned (RCG's small
    # diffusion model of the embeddings, learned_sampler:)
    embedding_sampler: str = ranged("gaussian", EMBEDDING_SAMPLER)
    kmeans_clusters: int = ranged(100, AT_LEAST_1)  # centres fitted on the training embeddings (kmeans sampler)
    learned_sampler: LearnedSamplerOptions = field(default_factory=lambda: LearnedSamplerOptions())
    # images written to samples.npz at the end (what `evaluate generated` scores)
    final_samples: int = ranged(10000, NON_NEGATIVE)


@dataclass
class StepLoopTrainConfig:
    """The train: keys every step-counted loop (GAN, diffusion, noise-aware guide) reads the same way."""
    # also stop at this much training time (not reproducible across machines)
    max_minutes: Optional[float] = ranged(None, optional(POSITIVE))
    log_every: int = ranged(100, AT_LEAST_1)  # steps between metrics.jsonl records
    checkpoint_every: int = ranged(1000, AT_LEAST_1)  # steps between training-state checkpoints
    keep_checkpoints: int = ranged(2, AT_LEAST_1)
    skip_bad_batches: int = ranged(0, NON_NEGATIVE)  # isolated NaN/Inf steps skipped before the run stops
    precision: str = "auto"  # as train.precision of the classifier
    tensorboard: bool = True
    threads: Optional[int] = ranged(None, optional(AT_LEAST_1))  # torch CPU threads; None = the free cores at start-up
    device: str = ranged("auto", DEVICE)  # auto (CUDA, else CPU; mps only when named, one process) | cpu | cuda | mps


@dataclass
class GanTrainConfig(StepLoopTrainConfig):
    steps: int = ranged(5000, AT_LEAST_1)  # generator steps (each after d_steps discriminator steps)
    d_steps: int = ranged(1, AT_LEAST_1)  # discriminator steps per generator step
    lr_g: float = ranged(2.0e-4, POSITIVE)  # Adam
    lr_d: float = ranged(2.0e-4, POSITIVE)
    beta1: float = ranged(0.0, FRACTION)  # Adam betas as in SNGAN/BigGAN
    beta2: float = ranged(0.999, FRACTION)
    # per step, warmed up as min(decay, (1 + step) / (10 + step)); sampling uses the EMA
    ema_decay: float = ranged(0.999, FRACTION)
    sample_every: int = ranged(1000, AT_LEAST_1)  # steps between sample grids (fixed noise and conditions)
    # stop when the discriminator's loss stays ~0 this many steps in a row (0 = never)
    collapse_steps: int = ranged(500, NON_NEGATIVE)
    channels_last: bool = True  # faster for the GAN's networks (benchmarks/notes/measurements-behind-code-choices.md)


@dataclass
class GanConfig(Config):
    gan: GanOptions = field(default_factory=GanOptions)
    train: GanTrainConfig = field(default_factory=GanTrainConfig)


@dataclass
class DiffusionOptions:
    conditioning_run: Optional[str] = None  # the trained classifier run whose representations condition and guide
    # class (label) | embedding (classifier embedding of a real image, RCG) | none
    conditioning: str = ranged("class", CONDITIONING)
    # classifier layer of the embedding conditions (maps are average-pooled): a name, or best (the embeddings
    # analysis's best val linear probe); penultimate, what the classifier's head reads, needs no analysis
    layer: str = "penultimate"
    weights: Optional[str] = None  # classifier checkpoint: best | last; None = the one it saved as final
    # the embeddings stage's folder its training embeddings and bank are read from when they match (None:
    # <conditioning_run>/embeddings); otherwise computed with the same code and kept in this run
    embeddings: Optional[str] = None
    # U-Net channels at full resolution (×multipliers below); 32: 1.1 M parameters at 28 px
    width: int = ranged(32, Rule(lambda v: v >= 8 and v % 8 == 0, "a multiple of 8"))
    multipliers: List[int] = field(default_factory=lambda: [1, 2, 2])  # width per level; the side halves per level
    blocks: int = ranged(1, AT_LEAST_1)  # residual blocks per level (+1 on the way up)
    # p > 1: the U-Net works on p×p pixel patches (pixel unshuffle): ~p² fewer operations
    patch: int = ranged(1, AT_LEAST_1)
    attention: bool = True  # one self-attention block at the lowest resolution
    dropout: float = ranged(0.0, FRACTION)
    # share of training rows whose condition is replaced by the null one (for CFG)
    condition_dropout: float = ranged(0.1, FRACTION)
    # loss weight min(SNR, γ)/(SNR + 1) (Hang et al. 2023); 0 = plain v-MSE
    min_snr_gamma: float = ranged(5.0, NON_NEGATIVE)
    # REPA: align the U-Net's middle map with the classifier's map at repa_layer; 0 = off
    repa_weight: float = ranged(0.0, NON_NEGATIVE)
    repa_layer: str = "stage2"  # a feature map of the classifier, or best (the analysis's best val probe among maps)
    # the reverse-process solver: ddpm | ddim | dpm++ (diffusers schedulers), what `visrep sample` uses by default
    solver: str = ranged("dpm++", one_of("ddpm", "ddim", "dpm++"))
    sample_steps: int = ranged(20, Rule(lambda v: 1 <= v <= 1000, "in [1, 1000] (the training timesteps)"))
    # classifier-free guidance scale s in u + s·(c − u); 1 = conditional alone, 0 = unconditional
    guidance: float = ranged(1.5, NON_NEGATIVE)
    # guide only where low·T ≤ t ≤ high·T
    guidance_interval: List[float] = field(default_factory=lambda: [0.0, 1.0], metadata=rule(INTERVAL))
    # sampled embeddings for unconditional generation: gaussian | kmeans | learned (learned_sampler:)
    embedding_sampler: str = ranged("gaussian", EMBEDDING_SAMPLER)
    kmeans_clusters: int = ranged(100, AT_LEAST_1)
    learned_sampler: LearnedSamplerOptions = field(default_factory=lambda: LearnedSamplerOptions())
    # images written to samples.npz at the end (what `evaluate generated` scores)
    final_samples: int = ranged(10000, NON_NEGATIVE)


@dataclass
class DiffusionTrainConfig(StepLoopTrainConfig):
    steps: int = ranged(20000, AT_LEAST_1)  # optimizer steps of data.batch_size images
    lr: float = ranged(1.0e-3, POSITIVE)  # AdamW, after a linear warm-up
    warmup_steps: int = ranged(200, NON_NEGATIVE)
    weight_decay: float = ranged(0.0, NON_NEGATIVE)
    grad_clip: float = ranged(1.0, NON_NEGATIVE)  # max gradient norm (0 = off)
    # per step, warmed up as min(decay, (1 + step) / (10 + step)); sampling uses the EMA
    ema_decay: float = ranged(0.999, FRACTION)
    sample_every: int = ranged(1000, AT_LEAST_1)  # steps between sample grids (fixed noise and conditions)
    channels_last: bool = False  # slower for this U-Net (benchmarks/notes/measurements-behind-code-choices.md)


@dataclass
class DiffusionConfig(Config):
    diffusion: DiffusionOptions = field(default_factory=DiffusionOptions)
    train: DiffusionTrainConfig = field(default_factory=DiffusionTrainConfig)


@dataclass
class GuideOptions:
    conditioning_run: Optional[str] = None  # the classifier run to copy (the diffusion model's conditioning run)
    weights: Optional[str] = None  # its checkpoint: best | last; None = the one it saved as final
    # sinusoidal timestep features → FiLM of the penultimate features
    time_dim: int = ranged(128, Rule(lambda v: v >= 2 and v % 2 == 0, "an even number ≥ 2"))


@dataclass
class GuideTrainConfig(StepLoopTrainConfig):
    steps: int = ranged(3000, AT_LEAST_1)  # AdamW steps on noised training images, t uniform over the schedule
    lr: float = ranged(1.0e-3, POSITIVE)
    warmup_steps: int = ranged(100, NON_NEGATIVE)
    weight_decay: float = ranged(0.0, NON_NEGATIVE)
    checkpoint_every: int = ranged(500, AT_LEAST_1)


@dataclass
class GuideConfig(Config):
    guide: GuideOptions = field(default_factory=GuideOptions)
    train: GuideTrainConfig = field(default_factory=GuideTrainConfig)


SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"  # package data; the repository's configs/ links here


def shipped_config(stage: str, source: Optional[str]) -> Optional[Path]:
    """``configs/<stage>_<source>.yaml`` (the classifier's: ``configs/<source>.yaml``) when visrep ships one
    for that built-in dataset, else None.

    ``visrep train evaluator mnist`` without --config takes configs/evaluator_mnist.yaml: the tuned
    recipe for that dataset (see benchmarks/RESULTS.md), not the schema's generic defaults.
    """
    if not source or "/" in source or source.startswith("."):
        return None  # a folder of the user's own: no shipped recipe
    path = SHIPPED_CONFIGS / (f"{source}.yaml" if stage == "classifier" else f"{stage}_{source}.yaml")
    return path if path.is_file() else None


def _schema(schema: type = Config):
    return OmegaConf.structured(schema)


def load_config(path: Optional[str | Path] = None, overrides: Optional[list[str]] = None,
                schema: type = Config, check: bool = True, migrate: bool = False) -> Any:
    """Build a validated config: schema defaults ← YAML file ← ``key.sub=value`` overrides.

    Returns the typed OmegaConf object (attribute access like the dataclass).
    Raises UserError naming the offending key or file.
    """
    cfg = _schema(schema)
    try:
        if path is not None:
            cfg = OmegaConf.merge(cfg, _read_yaml(Path(path), migrate))
        if overrides:
            check_dotlist(overrides)
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as err:
        raise UserError(describe_error(err)) from None
    if check:  # a run's saved config was accepted when it ran: older rules must not lock it out
        check_values(cfg)
    return cfg


def check_values(cfg) -> None:
    """UserError naming the first value outside the range its field declares (``ranged``)."""
    check_finite(cfg)
    _check_rules(cfg, "")
    if "data" in cfg:
        _check_data_values(cfg.data)


def _check_rules(node, prefix: str) -> None:
    """Every field of a structured config section with a rule in its metadata, sections walked in turn."""
    schema = OmegaConf.get_type(node)
    if not (isinstance(schema, type) and is_dataclass(schema)):
        return
    for item in fields(schema):
        if item.name not in node:
            continue
        key = f"{prefix}{item.name}"
        check = item.metadata.get("rule")
        value = node[item.name]
        if check is not None and not check.test(value):
            raise UserError(f"{key} must be {check.expected} (got {value})")
        if OmegaConf.is_dict(value):
            _check_rules(value, f"{key}.")


def check_finite(cfg, prefix: str = "") -> None:
    """Refuse NaN and ±inf anywhere in a config: no key means them (a NaN guidance scale silently wrote
    black images), and every range rule compares false against NaN."""
    container = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
    for key, value in leaves(container, prefix):
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{key} must be a finite number (got {value})")


def leaves(value, key: str = ""):
    """(dotted key, value) of every leaf of a plain config (dicts and lists walked)."""
    if isinstance(value, dict):
        for name, item in value.items():
            yield from leaves(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, f"{key}[{index}]")
    else:
        yield key, value


def check_split_fractions(val_fraction: float, test_fraction: float) -> None:
    """Both fractions, whether or not a source will use them: a value that is wrong is wrong everywhere."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise UserError(f"split fractions must each be in [0, 1) with val + test < 1 "
                        f"(got data.val_fraction={val_fraction}, data.test_fraction={test_fraction})")


def _check_data_values(data) -> None:
    check_split_fractions(data.val_fraction, data.test_fraction)
    if data.cache_dir and Path(data.cache_dir).expanduser().is_file():
        raise UserError(f"data.cache_dir {data.cache_dir} is a file; point it at a folder")


def _read_yaml(path: Path, migrate: bool = False):
    mapping = read_yaml_mapping(path)
    return OmegaConf.create(renamed_keys_applied(mapping) if migrate else mapping)


def renamed_keys_applied(mapping: dict) -> dict:
    """A saved config with each old key of RENAMED_KEYS under its new name (a run written before the rename)."""
    for old, new in RENAMED_KEYS.items():
        section, name = old.split(".")
        values = mapping.get(section)
        if isinstance(values, dict) and name in values:
            values[new.split(".")[1]] = values.pop(name)
    return mapping


def read_yaml_mapping(path: Path) -> dict:
    """A YAML file's top-level mapping; UserError when it is missing, not YAML, not a mapping, or gives a key
    twice at any level (plain YAML keeps the last one silently, so a repeated section would vanish)."""
    _check_config_file(path)
    try:
        loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_NoDuplicateKeys)
    except _RefusedYaml as err:
        raise UserError(f"{path}: {err}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UserError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(loaded, dict):
        raise UserError(f"config file {path} must hold a mapping of sections (run:, data:, ...)")
    return loaded


MAX_CONFIG_BYTES = 1 << 20  # the largest shipped config is a few kB; 1 MiB leaves room and bounds a bad file


def _check_config_file(path: Path) -> None:
    """A regular file of sane size: /dev/zero or a FIFO would never finish reading, and is not 'not found'."""
    if not path.exists():
        raise UserError(f"config file not found: {path}")
    if not path.is_file():
        raise UserError(f"config file {path} is not a regular file (a folder, device or pipe): give a YAML file")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise UserError(f"config file {path} is {path.stat().st_size / 2**20:.1f} MiB: a config is a few kB "
                        f"(at most {MAX_CONFIG_BYTES // 2**20} MiB accepted)")


class _RefusedYaml(Exception):
    pass


class _NoDuplicateKeys(yaml.SafeLoader):
    """Safe YAML without duplicate keys and without aliases. An alias (*name) lets a few lines expand
    to billions of nodes ("billion laughs"), which hung the loader; configs never need one."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _RefusedYaml(f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not accepted "
                               f"in config files; write the values out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _RefusedYaml(f"'{key}' is given twice (line {key_node.start_mark.line + 1}); give each key once")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def check_dotlist(overrides: list[str], form: str = "section.key=value") -> None:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise UserError(f"override '{item}' must look like {form}")
        if any(not char.isprintable() for char in item):  # OmegaConf's grammar would turn a newline into a space
            raise UserError(f"override {item!r} contains a control character (a newline, tab, ...): "
                            f"{item.split('=', 1)[0]} would be changed silently")


# keys given new names (old → new): refused with one line naming the new key; a finished run's saved
# config.yaml is read with them renamed (load_config(migrate=True)), so that old runs still sample and resume
RENAMED_KEYS = {"gan.sampler": "gan.embedding_sampler", "diffusion.sampler": "diffusion.solver"}
RENAME_REASONS = {"gan.sampler": "the embedding sampler: gaussian | kmeans",
                  "diffusion.sampler": "the reverse-process solver: ddpm | ddim | dpm++"}


def describe_error(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None)
    first_line = str(err).splitlines()[0]
    if type(err).__name__ == "ConfigKeyError" or "not in struct" in first_line.lower():
        if key in RENAMED_KEYS:
            return f"config key '{key}' was renamed '{RENAMED_KEYS[key]}' ({RENAME_REASONS[key]})"
        return f"unknown config key '{key}'"
    if key:
        return f"bad value for config key '{key}': {first_line}"
    return f"invalid config: {first_line}"


def to_yaml(cfg) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def to_dict(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)
