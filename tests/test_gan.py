"""The GAN stage: networks and conditioning in every mode, the training step, instance neighbourhoods,
checkpoints and exact resume, the sampling CLI, and each bad input as one error line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import REPO
from safetensors.torch import load_file

from visrep.cli import main
from visrep.config import GanConfig, load_config
from visrep.errors import UserError
from visrep.models import create_model

MODES = ("class", "embedding", "none")


def gan_config(root, conditioning_run, *overrides):
    return load_config(REPO / "configs" / "gan_tiny.yaml",
                       [f"run.root={root}", f"gan.conditioning_run={conditioning_run}",
                        f"data.cache_dir={root / 'cache'}", *overrides], GanConfig)


@pytest.fixture(scope="session")
def gan_runs(tiny_trained_run, tmp_path_factory):
    """A tiny class- and embedding-conditional GAN, trained once per session on the tiny classifier."""
    from visrep.training.gan import train_gan

    root = tmp_path_factory.mktemp("gan-runs")
    return {mode: train_gan(gan_config(root, tiny_trained_run, f"run.name={mode}", f"gan.conditioning={mode}"),
                            progress=False) for mode in ("class", "embedding")}


# ---- networks --------------------------------------------------------------------------------
@pytest.mark.parametrize("architecture", ["gan", "dcgan"])  # registered prefixes: resnet, dcgan
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [8, 16, 28, 32])
def test_generator_and_discriminator_shapes_in_every_mode(architecture, mode, size):
    common = {"image_size": size, "channels": 3, "mode": mode, "num_classes": 5, "embedding_dim": 12}
    generator = create_model(f"{architecture}_generator", **common, latent_dim=8, width=16, condition_dim=8)
    discriminator = create_model(f"{architecture}_discriminator", **common, width=16)
    condition = {"class": torch.tensor([0, 4, 2]), "embedding": torch.randn(3, 12), "none": None}[mode]
    images = generator(torch.randn(3, 8), condition)
    assert images.shape == (3, 3, size, size) and images.abs().max() <= 1
    assert discriminator(images, condition).shape == (3,)


def test_conditional_batchnorm_starts_plain_and_the_class_changes_the_image_from_the_start():
    from visrep.models.conditioning import ConditionalBatchNorm2d

    norm = ConditionalBatchNorm2d(4, style_dim=3)
    x = torch.randn(6, 4, 5, 5)
    plain = torch.nn.functional.batch_norm(x, None, None, training=True)
    assert torch.allclose(norm(x, torch.randn(6, 3)), plain, atol=1e-5)  # γ = 1, β = 0 whatever the style
    generator = create_model("gan_generator", image_size=8, channels=1, mode="class", num_classes=3,
                             latent_dim=8, width=8, condition_dim=8).eval()
    with torch.no_grad():
        out = generator(torch.randn(1, 8).expand(3, -1), torch.tensor([0, 1, 2]))
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])


def test_projection_discriminator_reads_the_condition():
    discriminator = create_model("gan_discriminator", image_size=8, channels=1, mode="embedding", embedding_dim=4,
                                 width=8)
    images = torch.rand(1, 1, 8, 8).expand(2, -1, -1, -1)  # one image, two conditions
    with torch.no_grad():
        logits = discriminator(images, torch.eye(4)[:2])
    assert not torch.isclose(logits[0], logits[1])


def test_minibatch_stddev_shows_the_discriminator_a_collapsed_batch():
    from visrep.models.gan import minibatch_stddev

    features = torch.randn(8, 3, 4, 4)
    diverse = minibatch_stddev(features)
    collapsed = minibatch_stddev(torch.randn(1, 3, 4, 4).expand(8, -1, -1, -1).contiguous())
    assert diverse.shape == (8, 4, 4, 4)
    assert diverse[:, 3].min() > 0.3 and collapsed[:, 3].max() < 1e-3
    assert torch.equal(diverse[:, :3], features)  # the features pass through unchanged
    assert minibatch_stddev(torch.randn(6, 2, 3, 3)).shape == (6, 3, 3, 3)  # groups of 3 when 4 does not divide


def test_sizes_without_up_blocks_are_refused():
    from visrep.models.gan import base_resolution

    assert base_resolution(28) == (7, 2) and base_resolution(64) == (4, 4) and base_resolution(8) == (4, 1)
    for size in (33, 100, 127, 6, 256):
        with pytest.raises(UserError):
            base_resolution(size)


def test_diffaugment_moves_pixels_as_documented_and_passes_gradients():
    from visrep.training.diffaugment import diff_augment

    torch.manual_seed(0)
    images = torch.rand(16, 3, 16, 16, requires_grad=True)
    for policy in ("color", "translation", "cutout"):
        out = diff_augment(images, [policy])
        assert out.shape == images.shape and out.dtype == images.dtype
        out.sum().backward()
        assert images.grad is not None and images.grad.abs().sum() > 0
        images.grad = None
    ones = torch.ones(16, 1, 16, 16)
    cut = diff_augment(ones, ["cutout"])
    zeroed = (cut == 0).flatten(1).sum(1)
    assert zeroed.max() <= 64 and zeroed.min() > 0  # one square of at most half the side (8 × 8), clipped at borders
    shifted = diff_augment(ones, ["translation"])
    # a shift of s pixels zero-fills s rows/columns: at most 2 px (16 / 8) each way, and the content is kept
    assert ((shifted == 0).flatten(1).sum(1) <= 2 * 16 + 2 * 16).all()
    assert set(shifted.unique().tolist()) <= {0.0, 1.0}


def test_unknown_model_option_is_one_error():
    with pytest.raises(UserError, match="no option"):
        create_model("gan_generator", image_size=8, channels=1, mode="class", widht=3)


# ---- conditions ------------------------------------------------------------------------------
def test_neighbourhoods_are_the_nearest_by_cosine():
    from visrep.representations.conditions import neighbourhoods

    rng = torch.Generator().manual_seed(0)
    points = torch.nn.functional.normalize(torch.randn(200, 6, generator=rng), dim=1)
    found = neighbourhoods(points, 5)
    brute = (points @ points.T).argsort(dim=1, descending=True)[:, :5]
    assert found.shape == (200, 5)
    assert torch.equal(found[:, 0], torch.arange(200))  # each point is its own first neighbour
    assert all(set(found[i].tolist()) == set(brute[i].tolist()) for i in range(200))


def test_condition_bank_samples_unit_embeddings_near_their_class():
    from visrep.representations.bank import ConditionBank

    rng = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(3, 8, generator=rng), dim=1) * 4
    labels = torch.arange(300) % 3
    points = torch.nn.functional.normalize(centres[labels] + 0.3 * torch.randn(300, 8, generator=rng), dim=1)
    bank = ConditionBank.fit(points, labels, 3, clusters=6)
    draws, drawn_labels = bank.sample(90, "gaussian", generator=torch.Generator().manual_seed(1))
    assert torch.allclose(draws.norm(dim=1), torch.ones(90), atol=1e-5)
    nearest_class = (draws @ torch.nn.functional.normalize(centres, dim=1).T).argmax(1)
    assert (nearest_class == drawn_labels).float().mean() > 0.95
    kmeans_draws, none = bank.sample(20, "kmeans")
    assert none is None and kmeans_draws.shape == (20, 8)


def test_embedding_mode_real_images_come_from_the_anchor_neighbourhood(gan_runs, tiny_trained_run, tmp_path):
    """draw_batch: the real image shown for a condition is one of that training image's k neighbours."""
    from visrep.training import gan as gan_stage

    cfg = gan_config(tmp_path, tiny_trained_run, "gan.conditioning=embedding", "run.name=probe")
    loop = gan_stage.prepare_loop(cfg, progress=False)
    conditions = loop.conditions
    torch.manual_seed(3)
    real, condition = (tensor.cpu() for tensor in gan_stage.draw_batch(loop))
    split = loop.ctx.data.splits["train"]
    all_images = split.uint8_batch(np.arange(len(split))).float() / 127.5 - 1
    for image, embedding in zip(real, condition):
        anchor = int((conditions.embeddings @ embedding).argmax())
        shown = int(((all_images - image).abs().flatten(1).sum(1)).argmin())
        assert shown in conditions.neighbours[anchor].tolist()
        # and a neighbour really is close: its cosine to the anchor is among the k highest
        cosines = conditions.embeddings @ conditions.embeddings[anchor]
        assert cosines[shown] >= cosines.topk(cfg.gan.knn_k).values[-1] - 1e-6


def test_mode_seeking_loss_punishes_a_generator_that_ignores_z():
    from visrep.training.gan_steps import mode_seeking_loss, paired_conditions

    assert torch.equal(paired_conditions(torch.tensor([4, 7, 1, 2, 9])), torch.tensor([4, 7, 4, 7, 9]))
    z = torch.randn(8, 16)
    same_image = torch.zeros(1, 1, 8, 8).expand(8, -1, -1, -1)
    varied = torch.randn(8, 1, 8, 8)
    assert mode_seeking_loss(same_image, z) > 1000 * mode_seeking_loss(varied, z)


# ---- training ------------------------------------------------------------------------------------
def test_one_step_moves_both_networks(tiny_trained_run, tmp_path):
    from visrep.training import gan as gan_stage

    cfg = gan_config(tmp_path, tiny_trained_run, "run.name=step", "gan.projected_head=true", "gan.guidance_weight=0.5")
    loop = gan_stage.prepare_loop(cfg, progress=False)
    generator, critic, conditioning = loop.stepper.generator, loop.stepper.critic, loop.conditioning
    before_g = [p.detach().clone() for p in generator.parameters()]
    before_d = [p.detach().clone() for p in critic.parameters()]
    encoder_before = [p.detach().clone() for p in conditioning.encoder.parameters()]
    gan_stage.train_step(loop)
    moved = lambda params, before: sum(not torch.equal(p, b) for p, b in zip(params, before))
    assert moved(generator.parameters(), before_g) > 0
    assert moved(critic.parameters(), before_d) > 0
    assert critic.head is not None and any(p.grad is not None for p in critic.head.parameters())
    assert moved(conditioning.encoder.parameters(), encoder_before) == 0  # the classifier stays frozen
    for key in ("d_loss", "g_loss", "guidance", "d_loss_projected", "mode_seeking"):
        assert np.isfinite(loop.state.interval[key])


def test_trained_run_is_a_scoreable_generator_run(gan_runs, tiny_trained_run):
    from visrep.evaluation.fake_sources import TargetFormat, load_image_set
    from visrep.inference.independence import read_generator_manifest, weights_hashes

    for mode, run in gan_runs.items():
        manifest = read_generator_manifest(run)
        assert weights_hashes(tiny_trained_run / "best.safetensors")["tensors"] in manifest["conditioning_weights_sha256"]
        images = load_image_set(run, TargetFormat(8, 1, "crop", tuple(str(i) for i in range(10))), progress=False)
        assert len(images) == 60 and images.declared_hashes
        if mode == "class":
            assert np.array_equal(np.bincount(images.labels), np.full(10, 6))
        else:  # each sample names the training image that conditioned it
            assert images.condition_ids is not None and images.labels is not None
        assert (run / "grids" / "final.png").is_file() and (run / "metrics.json").is_file()


def test_saved_generator_gives_the_same_samples_for_a_seed(gan_runs):
    from visrep.generate.generator_run import load_generator_run
    from visrep.generate.sample import sample_class, sample_unconditional

    first, second = (load_generator_run(gan_runs["class"]) for _ in range(2))
    assert torch.equal(sample_class(first, "3", 6, seed=5).images, sample_class(second, 3, 6, seed=5).images)
    assert not torch.equal(sample_class(first, 3, 6, seed=5).images, sample_class(first, 3, 6, seed=6).images)
    # the stage's own samples.npz came from the same weights: regenerate it from the saved run
    saved = np.load(gan_runs["class"] / "samples.npz")["images"]
    # on the device the stage sampled on: floating-point results differ between CPU and CUDA kernels
    on_stage_device = load_generator_run(gan_runs["class"], torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    again = sample_unconditional(on_stage_device, len(saved), seed=first.cfg.run.seed + 3).images.numpy()
    if torch.cuda.is_available():  # CUDA kernels may round differently from one call to the next: a level or two
        assert np.abs(saved.astype(int) - again).max() <= 2
    else:
        assert np.array_equal(saved, again)


def test_dcgan_architecture_trains_and_its_run_samples_the_same_images(tiny_trained_run, tmp_path):
    """gan.architecture=dcgan: the plain-conv networks train in the same loop, and the saved run rebuilds
    that generator (not the residual one) for `visrep sample`."""
    from visrep.generate.generator_run import load_generator_run
    from visrep.generate.sample import sample_class
    from visrep.training.gan import train_gan

    cfg = gan_config(tmp_path, tiny_trained_run, "run.name=dcgan", "gan.architecture=dcgan", "train.steps=6")
    run = train_gan(cfg, progress=False)
    first, second = load_generator_run(run), load_generator_run(run)
    assert type(first.generator).__name__ == "DcganGenerator"
    assert torch.equal(sample_class(first, 2, 4, seed=1).images, sample_class(second, 2, 4, seed=1).images)
    assert (run / "samples.npz").is_file()


def test_interrupted_run_resumes_to_the_same_weights(tiny_trained_run, tmp_path, monkeypatch):
    """Stopped two steps after a checkpoint (not at one), then resumed: the final weights equal an
    uninterrupted run's (deterministic mode)."""
    from visrep.training import gan as gan_stage
    from visrep.training import step_loop

    reference = gan_stage.train_gan(gan_config(tmp_path, tiny_trained_run, "run.name=reference",
                                               "gan.conditioning=embedding"), progress=False)
    original_after_step = step_loop.after_step

    def stop_at_step_14(loop):
        original_after_step(loop)
        if loop.state.step == 14:
            raise KeyboardInterrupt

    monkeypatch.setattr(step_loop, "after_step", stop_at_step_14)
    with pytest.raises(KeyboardInterrupt):
        gan_stage.train_gan(gan_config(tmp_path, tiny_trained_run, "run.name=victim", "gan.conditioning=embedding"),
                            progress=False)
    monkeypatch.setattr(step_loop, "after_step", original_after_step)
    victim = tmp_path / "victim"
    assert not (victim / "metrics.json").exists()
    assert main(["train", "gan", "--resume", str(victim)]) == 0
    expected, got = load_file(reference / "generator_ema.safetensors"), load_file(victim / "generator_ema.safetensors")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[name], got[name]) for name in expected)
    assert (victim / "metrics.jsonl").read_text().count("\n") == (reference / "metrics.jsonl").read_text().count("\n")


# ---- sampling CLI ----------------------------------------------------------------------------------
def test_sample_cli_class_like_interpolate_and_unconditional(gan_runs, tmp_path):
    from PIL import Image

    from visrep.evaluation.fake_sources import TargetFormat, load_image_set

    target = TargetFormat(8, 1, "crop", tuple(str(i) for i in range(10)))
    out = tmp_path / "threes"
    assert main(["sample", str(gan_runs["class"]), "--class", "3", "--n", "8", "--out", str(out)]) == 0
    images = load_image_set(out, target, progress=False)
    assert len(images) == 8 and set(images.labels) == {3} and (out / "grid.png").is_file()
    assert main(["sample", str(gan_runs["class"]), "--n", "20", "--out", str(tmp_path / "any")]) == 0
    assert len(load_image_set(tmp_path / "any", target, progress=False)) == 20

    given = tmp_path / "given.png"
    Image.fromarray(np.full((16, 16), 200, dtype=np.uint8)).save(given)
    other = tmp_path / "other.png"
    Image.fromarray(np.eye(16, dtype=np.uint8) * 255).save(other)
    embedding_run = str(gan_runs["embedding"])
    assert main(["sample", embedding_run, "--like", str(given), "--n", "5", "--out", str(tmp_path / "like")]) == 0
    assert np.load(tmp_path / "like" / "samples.npz")["images"].shape == (5, 1, 8, 8)
    assert main(["sample", embedding_run, "--interpolate", str(given), str(other), "--n", "6",
                 "--out", str(tmp_path / "walk")]) == 0
    assert np.load(tmp_path / "walk" / "samples.npz")["images"].shape == (6, 1, 8, 8)
    first, second = (np.load(tmp_path / name / "samples.npz")["images"] for name in ("like", "walk"))
    like_other = tmp_path / "like-other"
    assert main(["sample", embedding_run, "--like", str(other), "--n", "5", "--out", str(like_other)]) == 0
    assert not np.array_equal(first, np.load(like_other / "samples.npz")["images"])  # the condition matters
    # the walk starts at the first image's embedding: its first frame is --like A with the walk's z (seed 0, z[0])
    assert np.array_equal(second[0], first[0])
    assert main(["sample", embedding_run, "--n", "7", "--out", str(tmp_path / "sampled")]) == 0
    sampled = np.load(tmp_path / "sampled" / "samples.npz")
    assert sampled["images"].shape == (7, 1, 8, 8) and sampled["labels"].shape == (7,)  # gaussian: its class


def test_interpolation_ends_are_the_given_embeddings():
    from visrep.generate.sample import slerp

    a, b = torch.nn.functional.normalize(torch.randn(2, 5), dim=1)
    path = slerp(a, b, torch.linspace(0, 1, 4))
    assert torch.allclose(path[0], a, atol=1e-5) and torch.allclose(path[-1], b, atol=1e-5)
    assert torch.allclose(path.norm(dim=1), torch.ones(4), atol=1e-5)


# ---- bad input: one error line, exit code 2, nothing written -------------------------------------
def _fails(capsys, argv, message):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and "\n" not in err and message in err, err


def test_bad_sampling_input_is_one_error_line(gan_runs, tmp_path, capsys):
    run = str(gan_runs["class"])
    _fails(capsys, ["sample", run, "--class", "cat", "--out", str(tmp_path / "a")], "unknown class 'cat'")
    _fails(capsys, ["sample", run, "--class", "10", "--out", str(tmp_path / "a")], "unknown class '10'")
    _fails(capsys, ["sample", run, "--n", "0", "--out", str(tmp_path / "a")], "--n must be ≥ 1")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    embedding_run = str(gan_runs["embedding"])
    _fails(capsys, ["sample", embedding_run, "--like", str(corrupt), "--out", str(tmp_path / "a")], "cannot read image")
    from PIL import Image

    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((2, 2), dtype=np.uint8)).save(tiny)
    _fails(capsys, ["sample", embedding_run, "--like", str(tiny), "--out", str(tmp_path / "a")], "too small")
    _fails(capsys, ["sample", run, "--like", str(tiny), "--out", str(tmp_path / "a")], "embedding-conditional")
    _fails(capsys, ["sample", str(tmp_path), "--out", str(tmp_path / "a")], "not a finished generator run")
    _fails(capsys, ["sample", run, "--steps", "5", "--classifier-scale", "2", "--out", str(tmp_path / "a")],
           "--steps, --classifier-scale: a GAN draws in one step")
    assert not (tmp_path / "a").exists()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    _fails(capsys, ["sample", run, "--out", str(taken)], "already exists")
    _fails(capsys, ["sample", run, "--out", str(taken), "--overwrite"], "not a sample folder")
    _fails(capsys, ["sample", run, "--out", str(taken / "keep.txt"), "--overwrite"], "not a sample folder")
    assert (taken / "keep.txt").read_text() == "mine"
    assert main(["sample", run, "--n", "3", "--out", str(tmp_path / "again")]) == 0
    assert main(["sample", run, "--n", "4", "--out", str(tmp_path / "again"), "--overwrite"]) == 0  # its own: replaced
    assert np.load(tmp_path / "again" / "samples.npz")["images"].shape[0] == 4


def test_bad_training_input_is_one_error_line(tiny_trained_run, gan_runs, tmp_path, capsys):
    config = str(REPO / "configs" / "gan_tiny.yaml")
    common = ["--config", config, f"run.root={tmp_path / 'runs'}", f"data.cache_dir={tmp_path / 'cache'}"]
    _fails(capsys, ["train", "gan", *common, f"gan.conditioning_run={tmp_path / 'nowhere'}"], "not found")
    _fails(capsys, ["train", "gan", *common, f"gan.conditioning_run={gan_runs['class']}"], "not a trained classifier")
    _fails(capsys, ["train", "gan", *common, f"gan.conditioning_run={tiny_trained_run}", "data.image_size=12"],
           "other data")
    _fails(capsys, ["train", "gan", *common, f"gan.conditioning_run={tiny_trained_run}", "data.val_fraction=0.3"],
           "other data")
    _fails(capsys, ["train", "gan", *common, f"gan.conditioning_run={tiny_trained_run}", "gan.conditioning=embedding",
                    "gan.knn_k=1000"], "larger than the smallest class")
    _fails(capsys, ["train", "gan", *common, f"gan.conditioning_run={tiny_trained_run}", "gan.layer=nope",
                    "gan.conditioning=embedding"], "no layer 'nope'")
    _fails(capsys, ["train", "gan", *common, f"gan.conditioning_run={tiny_trained_run}", "gan.conditioning=maybe"],
           "gan.conditioning must be")
    assert not (tmp_path / "runs").exists()


def test_collapsed_discriminator_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_trained_run, tmp_path,
                                                                                    monkeypatch, capsys):
    """A discriminator loss pinned below the collapse level for collapse_steps steps stops training with one
    line (exit 3); checkpoints written before the collapse began are kept, none is written during it."""
    from visrep.training import gan as gan_stage

    monkeypatch.setattr(gan_stage, "COLLAPSE_LOSS", 1e9)  # every step now counts as collapsed
    argv = ["train", "gan", "--config", str(REPO / "configs" / "gan_tiny.yaml"), "--name", "collapse",
            f"run.root={tmp_path}", f"gan.conditioning_run={tiny_trained_run}", f"data.cache_dir={tmp_path / 'cache'}",
            "train.collapse_steps=6"]
    assert main(argv) == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: gan training stopped at step 6") and "discriminator" in err
    run = tmp_path / "collapse"
    assert not (run / "metrics.json").exists() and not list((run / "checkpoints").glob("state-*.pt"))


# ---- the embeddings stage as the generators' input ---------------------------------------------
def test_a_generator_reads_the_embeddings_stage_and_trains_as_if_it_had_computed_them(tiny_trained_run, tmp_path):
    """Embedding mode: with the embeddings stage's files for the same weights and data, the GAN reads them (and
    the bank beside them) instead of embedding the training split again; without them it computes the same
    numbers with the same code and keeps them in its own run. Both runs end with the same weights, bit for bit;
    generator.json says where the embeddings came from and which layer by what rule."""
    import json
    import shutil

    from visrep.config import EmbedConfig
    from visrep.embeddings import embed_classifier_run, load_embeddings
    from visrep.training.gan import train_gan

    classifier = tmp_path / "clf"
    shutil.copytree(tiny_trained_run, classifier)  # the shared run stays untouched
    embed_classifier_run(classifier, load_config(overrides=["embed.layers=[all]", "embed.kmeans_clusters=8",
                                                            "analysis.map_points=60", "analysis.sample_points=200",
                                                            "analysis.retrieval_queries=2", "analysis.retrieval_k=2"],
                                                 schema=EmbedConfig), progress=False)
    fresh_classifier = tmp_path / "clf-without-embeddings"
    shutil.copytree(tiny_trained_run, fresh_classifier)
    runs = {name: train_gan(gan_config(tmp_path, run, f"run.name={name}", "gan.conditioning=embedding",
                                       "gan.final_samples=8", "train.steps=8"), progress=False)
            for name, run in (("read", classifier), ("computed", fresh_classifier))}
    read, computed = (json.loads((runs[name] / "generator.json").read_text())["condition_layer"]
                      for name in ("read", "computed"))
    assert read["embeddings"] == str(classifier / "embeddings" / "penultimate" / "train.safetensors")
    assert computed["embeddings"] == "computed" and computed["analysis_best"] is None
    assert read["layer"] == computed["layer"] == "penultimate" and "default" in read["rule"]
    assert read["analysis_best"] in ("stem", "stage1", "stage2", "stage3", "penultimate")
    kept = load_embeddings(runs["computed"] / "embeddings", "penultimate", "train")  # stored as the stage stores
    stored = load_embeddings(classifier, "penultimate", "train")
    assert torch.equal(kept.features, stored.features) and kept.ids == stored.ids
    expected, got = (load_file(runs[name] / "generator_ema.safetensors") for name in ("read", "computed"))
    assert all(torch.equal(expected[key], got[key]) for key in expected)
    assert not (runs["read"] / "embeddings").exists()  # read, not copied


def test_layer_best_takes_the_analysis_best_val_probe_and_needs_an_analysis(tiny_trained_run, tmp_path, capsys):
    import json
    import shutil

    from visrep.representations.layer_choice import choose_layer

    classifier = tmp_path / "clf"
    shutil.copytree(tiny_trained_run, classifier)
    with pytest.raises(UserError, match="gan.layer=best .* has none .*visrep embed"):
        choose_layer("best", classifier, "best", "gan.layer")
    from visrep.inference.independence import file_sha256

    sha = file_sha256(classifier / "best.safetensors")
    rows = [{"layer": "stage1", "probe": {"val": 0.8}, "weights_sha256": sha, "pooling": "avg"},
            {"layer": "stage2", "probe": {"val": 0.9}, "weights_sha256": sha, "pooling": "avg"},
            {"layer": "stage3", "probe": {"val": 0.97}, "weights_sha256": sha, "pooling": "max"},  # not a condition
            {"layer": "penultimate", "probe": {"val": 0.95}, "weights_sha256": "other weights", "pooling": "avg"}]
    (classifier / "embeddings").mkdir()
    (classifier / "embeddings" / "analysis.json").write_text(json.dumps({"layers": rows}))
    choice = choose_layer("best", classifier, "best", "gan.layer")
    assert (choice.layer, choice.analysis_best_val_probe) == ("stage2", 0.9) and "best val linear probe" in choice.rule
    assert choose_layer("stage1", classifier, "best", "gan.layer").analysis_best == "stage2"
    for row, shape in zip(rows, ([16, 4, 4], [32, 2, 2], [32, 1, 1], [32])):
        row["layer_output_shape"] = shape
    rows.append({"layer": "penultimate", "probe": {"val": 0.99}, "weights_sha256": sha, "pooling": "avg",
                 "layer_output_shape": [32]})  # the best of all, but a vector: REPA needs a map
    (classifier / "embeddings" / "analysis.json").write_text(json.dumps({"layers": rows}))
    assert choose_layer("best", classifier, "best", "gan.layer").layer == "penultimate"
    repa = choose_layer("best", classifier, "best", "diffusion.repa_layer", maps_only=True)
    assert repa.layer == "stage2" and "among its feature maps" in repa.rule


def test_a_gan_samples_unconditionally_through_the_learned_embedding_sampler(tiny_trained_run, tmp_path):
    """embedding_sampler=learned: the run fits RCG's small diffusion model of its training embeddings, keeps it
    beside the bank, and `visrep sample` without a condition draws unit embeddings from it (no class labels)."""
    import json

    from visrep.evaluation.fake_sources import TargetFormat, load_image_set
    from visrep.generate.generator_run import load_generator_run
    from visrep.generate.sample import plan_unconditional
    from visrep.representations.learned_sampler import SAMPLER_FILE
    from visrep.training.gan import train_gan

    run = train_gan(gan_config(tmp_path, tiny_trained_run, "run.name=learned", "gan.conditioning=embedding",
                               "gan.embedding_sampler=learned", "gan.learned_sampler.steps=40",
                               "gan.learned_sampler.width=32", "gan.learned_sampler.sample_steps=10",
                               "train.steps=4", "gan.final_samples=8"), progress=False)
    assert (run / SAMPLER_FILE).is_file()
    assert json.loads((run / "generator.json").read_text())["embedding_sampler"] == "learned"
    loaded = load_generator_run(run)
    embeddings, labels = loaded.sampled_embeddings(6, None, torch.Generator().manual_seed(0))
    assert labels is None and torch.allclose(embeddings.norm(dim=1), torch.ones(6), atol=1e-5)
    assert plan_unconditional(loaded, 6).description.endswith("(learned)")
    out = tmp_path / "drawn"
    assert main(["sample", str(run), "--n", "6", "--out", str(out)]) == 0
    images = load_image_set(out, TargetFormat(8, 1, "crop", tuple(str(i) for i in range(10))), progress=False)
    assert len(images) == 6
