"""The one-command pipeline: every stage in its folder, finished stages skipped, an interrupted GAN
stage resumed, changed settings re-running only what they affect, bad requests refused up front."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from visrep.cli import main
from visrep.config import DiffusionConfig, GanConfig, load_config
from visrep.pipeline import run_pipeline
from visrep.pipeline.config import STAGES
from visrep.pipeline.report_sections import SECTION_IDS
from visrep.pipeline.state import MARKER

from conftest import REPO, sigkill_at_random_step, start_visrep

TINY = REPO / "configs" / "pipeline_tiny.yaml"


def markers(root: Path) -> dict[str, dict]:
    return {stage: json.loads((root / stage / MARKER).read_text()) for stage in STAGES
            if (root / stage / MARKER).is_file()}


def test_every_stage_leaves_its_folder_marked_done(tiny_pipeline):
    assert set(markers(tiny_pipeline)) == set(STAGES)
    assert (tiny_pipeline / "classifier" / "eval-test" / "metrics.json").is_file()
    assert (tiny_pipeline / "evaluator" / "evaluator.json").is_file()
    for generator in ("gan", "diffusion"):
        scored = json.loads((tiny_pipeline / "generative" / generator / "metrics.json").read_text())
        assert scored["fake"]["path"] == str(tiny_pipeline / generator)
        assert scored["evaluator"]["run"] == str(tiny_pipeline / "evaluator")
        assert scored["in_loop"]  # the conditioning classifier's numbers, beside the independent ones
    evaluator = json.loads((tiny_pipeline / "evaluator" / "evaluator.json").read_text())
    assert evaluator["conditioning"]["run"] == str(tiny_pipeline / "classifier")


def _weights_hashes(run: Path) -> set[str]:
    """Both hash forms of every weights file in a run folder, recomputed from the files (not read from records)."""
    from visrep.inference.independence import weights_hashes

    return {digest for weights in run.glob("*.safetensors") for digest in weights_hashes(weights).values()}


def test_the_independent_scores_come_from_other_weights_than_the_conditioning_cnn(tiny_pipeline):
    classifier, evaluator = _weights_hashes(tiny_pipeline / "classifier"), _weights_hashes(tiny_pipeline / "evaluator")
    assert classifier and evaluator and not classifier & evaluator  # two networks, not one under two names
    for generator in ("gan", "diffusion"):
        manifest = json.loads((tiny_pipeline / generator / "generator.json").read_text())
        declared = set(manifest["conditioning_weights_sha256"])
        scored = json.loads((tiny_pipeline / "generative" / generator / "metrics.json").read_text())
        assert declared & classifier and not declared & evaluator  # conditioned on the CNN, blind to the evaluator
        assert {scored["evaluator"]["weights_sha256"], scored["evaluator"]["weights_file_sha256"]} <= evaluator
        assert scored["independence"].startswith("verified against"), scored["independence"]


# The tiny pipeline's generators (24 steps) only show that the stages run: the evaluator scores their
# images at chance. With these settings the same tiny class-conditional generators (8 px digits, conditioned
# on the pipeline's classifier) learn their classes in about 2 s of training each on 1 thread. At 60 GAN
# steps (seed 0), each change measured alone: lr 2e-4 instead of 2e-3 → GAN-test 0.25, no classifier loss
# (guidance_weight 0) → 0.25, g_width 16 → 0.58, mode seeking 0.3 → 0.59, all as here → 0.68-0.73. At 75
# diffusion steps: lr 1e-3 → 0.77, guidance 1.5 → 0.68, as here → 0.84.
LEARNING_GENERATORS = {
    "gan": ("gan_tiny.yaml", GanConfig, ["train.steps=60", "train.lr_g=2e-3", "train.lr_d=2e-3", "gan.g_width=32",
                                         "gan.guidance_weight=2", "gan.mode_seeking_weight=0",
                                         "gan.final_samples=200"]),
    "diffusion": ("diffusion_tiny.yaml", DiffusionConfig, ["train.steps=75", "train.lr=3e-3",
                                                           "diffusion.guidance=3", "diffusion.final_samples=200"]),
}
# GAN-test by the pipeline's evaluator (0.89 on real test images; chance 0.1), 200 images, over run.seed 0-3
# on an AMD EPYC in bf16: GAN 0.645-0.775, diffusion 0.795-0.905; everything in fp32 (a CPU without bf16),
# seeds 0-1: GAN 0.685-0.695, diffusion 0.835-0.895. The thresholds, 4-5× chance, sit ~0.25 below the lowest
# of these, room for another CPU's arithmetic (binomial sd at 200 images: 0.035).
MIN_GAN_TEST = {"gan": 0.4, "diffusion": 0.5}


@pytest.fixture(scope="session")
def learned_generators(tiny_pipeline, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """A class-conditional GAN and diffusion model that learn in seconds, conditioned on the tiny pipeline's
    classifier and scored by its independent evaluator: {name: (generator run, scoring metrics)}."""
    from visrep.config import GenerativeEvalConfig
    from visrep.evaluation.generative import evaluate_generated
    from visrep.training.diffusion import train_diffusion
    from visrep.training.gan import train_gan

    root = tmp_path_factory.mktemp("learned-generators")
    common = [f"run.root={root}", f"data.cache_dir={root / 'cache'}", "train.sample_every=1000",
              "train.checkpoint_every=1000", "train.log_every=1000"]  # no grids or checkpoints on the way
    trainers = {"gan": train_gan, "diffusion": train_diffusion}
    scored = {}
    for name, (recipe, schema, settings) in LEARNING_GENERATORS.items():
        cfg = load_config(REPO / "configs" / recipe, [*common, f"run.name={name}", f"{name}.conditioning=class",
                                                      f"{name}.conditioning_run={tiny_pipeline / 'classifier'}",
                                                      *settings], schema)
        run = trainers[name](cfg, progress=False)
        scoring = load_config(None, [f"run.root={root / 'scored'}", f"run.name={name}", "generative.cas=false",
                                     "generative.floor=false", "generative.threads=1",
                                     "generative.cache=false",  # nothing written into the shared pipeline's folders
                                     f"generative.evaluator={tiny_pipeline / 'evaluator'}",
                                     f"generative.fake={run}"], GenerativeEvalConfig)
        scored[name] = (run, evaluate_generated(scoring, progress=False)[1])
    return scored


@pytest.mark.parametrize("generator", ["gan", "diffusion"])
def test_trained_generators_draw_their_class_as_an_independent_evaluator_sees_it(learned_generators, tiny_pipeline,
                                                                                 generator):
    run, metrics = learned_generators[generator]
    classifier, evaluator = _weights_hashes(tiny_pipeline / "classifier"), _weights_hashes(tiny_pipeline / "evaluator")
    assert classifier and evaluator and not classifier & evaluator  # the judge is not the conditioning CNN
    declared = set(json.loads((run / "generator.json").read_text())["conditioning_weights_sha256"])
    assert declared & classifier and not declared & evaluator  # conditioned on the classifier, blind to the evaluator
    assert {metrics["evaluator"]["weights_sha256"], metrics["evaluator"]["weights_file_sha256"]} <= evaluator
    assert metrics["independence"].startswith("verified against"), metrics["independence"]
    gan_test = metrics["model"]["gan_test"]
    assert gan_test["n"] == 200 and gan_test["chance"] == pytest.approx(0.1)
    assert gan_test["accuracy"] >= MIN_GAN_TEST[generator], gan_test


def test_report_is_self_contained_with_every_section(tiny_pipeline):
    html = (tiny_pipeline / "report" / "report.html").read_text()
    for section in (*SECTION_IDS, "generated-gan", "generated-diffusion"):
        assert f"<section id='{section}'>" in html
    images = re.findall(r"<img src='data:image/png;base64,([^']+)'", html)
    assert len(images) >= 9 and "src='" not in html.replace("src='data:image/png;base64,", "")
    for encoded in images:
        Image.open(io.BytesIO(base64.b64decode(encoded))).verify()  # every embedded PNG decodes
    markdown = (tiny_pipeline / "report" / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert links and all((tiny_pipeline / "report" / link).is_file() for link in links)
    for picture in ("diffusion_variations.png", "diffusion_interpolations.png", "diffusion_guidance.png",
                    "gan_classes.png"):
        assert (tiny_pipeline / "report" / "figures" / picture).is_file()


def test_a_second_run_skips_every_finished_stage(tiny_pipeline, tmp_path, capsys):
    copy = tmp_path / tiny_pipeline.name
    shutil.copytree(tiny_pipeline, copy)  # the shared pipeline stays as it is, whatever happens here
    before = markers(copy)
    run_pipeline(TINY, [f"run.root={tmp_path}", "classifier.train.threads=2", "gan.train.device=cpu", "data.in_memory=true"],
                 progress=False)
    out = capsys.readouterr().out
    assert out.count("done earlier with this config") == len(STAGES)  # machine settings are not in the key
    assert markers(copy) == before


def test_a_changed_gan_setting_reruns_only_what_reads_the_gan(tiny_pipeline, tmp_path, capsys):
    root = tmp_path / "moved"
    shutil.copytree(tiny_pipeline, tmp_path / "copy")
    shutil.move(tmp_path / "copy", root / tiny_pipeline.name)  # a moved pipeline folder keeps its stages
    before = markers(root / tiny_pipeline.name)
    run_pipeline(TINY, [f"run.root={root}", "gan.train.steps=12"], progress=False)
    after = markers(root / tiny_pipeline.name)
    rerun = {stage for stage in STAGES if after[stage] != before[stage]}
    assert rerun == {"gan", "generative", "report"}
    kept = list((root / tiny_pipeline.name).glob("gan.replaced-*"))
    assert len(kept) == 1 and (kept[0] / "generator_ema.safetensors").is_file()  # set aside, not deleted
    assert "made with another config" in capsys.readouterr().out
    scored = json.loads((root / tiny_pipeline.name / "generative" / "gan" / "metrics.json").read_text())
    assert scored["in_loop"]["network"].endswith(str(root / tiny_pipeline.name / "classifier"))


def test_a_pipeline_killed_in_the_gan_stage_resumes_there(tmp_path, capsys):
    steps = ["gan.train.steps=160", "gan.train.checkpoint_every=10", "gan.train.log_every=10"]
    process = start_visrep(tmp_path, "pipeline", "--config", str(TINY), f"run.root={tmp_path}", *steps)
    root = tmp_path / "tiny-pipeline"
    where = sigkill_at_random_step(process, root / "gan" / "checkpoints", epochs=16, every=10)
    done = markers(root)
    assert set(done) == {"data", "classifier", "embeddings", "evaluator"}, where
    run_pipeline(TINY, [f"run.root={tmp_path}", *steps], progress=False)
    out = capsys.readouterr().out
    for stage in done:
        assert f"[{stage}] done earlier with this config" in out, where
    assert "[gan] resuming" in out, where
    assert markers(root)["classifier"] == done["classifier"]
    assert json.loads((root / "gan" / "metrics.json").read_text())["steps"] == 160
    assert "resum" in (root / "gan" / "log.txt").read_text()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("case, expected", [
    ("missing data folder", "data folder not found"),
    ("unknown stage in --only", "unknown stage 'gna'"),
    ("stage named twice", "'gan' is given twice"),
    ("stage listed twice", "names 'gan' twice"),
    ("unknown key", "unknown config key 'train.stepz'"),
    ("generator without its classifier", "'gan' needs the classifier stage"),
    ("bad report option", "report.per_class must be ≥ 1"),
    ("evaluator sharing the classifier's seed", "must not share the conditioning CNN's seed"),
    ("stages not a list", "stages: must be a list"),
    ("unknown section", "unknown pipeline section"),
])
def test_bad_requests_fail_in_one_line_before_any_stage_runs(tmp_path, capsys, case, expected):
    root = f"run.root={tmp_path / 'runs'}"
    twice = _write(tmp_path, TINY.read_text() + "gan:\n  config: gan_tiny.yaml\n")
    argv = {"missing data folder": ["--config", str(TINY), root, f"data.source={tmp_path / 'nowhere'}"],
            "unknown stage in --only": ["--config", str(TINY), root, "--only", "classifier,gna"],
            "stage named twice": ["--config", str(twice), root],
            "stage listed twice": ["--config", str(TINY), root, "stages=[data,gan,gan]"],
            "unknown key": ["--config", str(TINY), root, "gan.train.stepz=3"],
            "generator without its classifier": ["--config", str(TINY), root, "stages=[data,gan]"],
            "bad report option": ["--config", str(TINY), root, "report.per_class=0"],
            "evaluator sharing the classifier's seed": ["--config", str(TINY), root, "evaluator.run.seed=0"],
            "stages not a list": ["--config", str(TINY), root, "stages=data"],
            "unknown section": ["--config", str(TINY), root, "gna.train.steps=3"]}[case]
    assert main(["pipeline", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and expected in err[0], err
    assert not (tmp_path / "runs").exists()


def test_only_needs_the_stages_it_reads_to_be_done(tmp_path, capsys):
    assert main(["pipeline", "--config", str(TINY), f"run.root={tmp_path}", "--only", "gan"]) == 2
    assert "reads the 'classifier' stage" in capsys.readouterr().err
    assert not (tmp_path / "tiny-pipeline").exists()


@pytest.mark.parametrize("name", ["digits", "mnist", "cifar10", "tiny"])
def test_every_shipped_pipeline_config_resolves(name):
    from visrep.pipeline.config import load_pipeline
    from visrep.pipeline.wiring import resolved_configs

    pipeline = load_pipeline(REPO / "configs" / f"pipeline_{name}.yaml")
    configs = resolved_configs(pipeline)
    assert pipeline.stages == list(STAGES)
    classifier, evaluator = configs["classifier"], configs["evaluator"]
    assert evaluator.run.seed != classifier.run.seed
    assert evaluator.model.name != classifier.model.name or name == "tiny"  # tiny: one family, other widths
    for stage in ("gan", "diffusion"):
        assert configs[stage].data.source == classifier.data.source
        assert configs[stage][stage].conditioning_run == str(pipeline.stage_dir("classifier"))


def test_a_folder_the_pipeline_did_not_make_is_never_touched(tmp_path, capsys):
    mine = tmp_path / "tiny-pipeline" / "data" / "photo.png"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"not the pipeline's")
    assert main(["pipeline", "--config", str(TINY), f"run.root={tmp_path}", "--only", "data"]) == 2
    assert "was not made by this pipeline" in capsys.readouterr().err
    assert mine.read_bytes() == b"not the pipeline's"


def test_from_needs_the_stages_before_it_done(tmp_path, capsys):
    assert main(["pipeline", "--config", str(TINY), f"run.root={tmp_path}", "--from", "gan"]) == 2
    assert "reads the 'classifier' stage" in capsys.readouterr().err
