from pathlib import Path

import pytest

from visrep.config import load_config, to_yaml
from visrep.errors import UserError


def test_defaults_yaml_and_overrides_merge(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  image_size: 16\n  augment:\n    flip: true\nrun:\n  seed: 3\n")
    cfg = load_config(path, ["data.image_size=32"])
    assert cfg.data.image_size == 32 and cfg.data.augment.flip is True and cfg.run.seed == 3
    assert "image_size: 32" in to_yaml(cfg)


@pytest.mark.parametrize("override, message", [
    ("data.imgae_size=32", "unknown config key 'data.imgae_size'"),
    ("nosuch.key=1", "unknown config key 'nosuch"),
    ("data.image_size=big", "bad value for config key 'data.image_size'"),
    ("data.strict=maybe", "bad value for config key 'data.strict'"),
    ("data.image_size", "must look like section.key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(UserError, match=message):
        load_config(overrides=[override])


def test_unknown_key_in_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  colour: red\n")
    with pytest.raises(UserError, match="unknown config key 'data.colour'"):
        load_config(path)


def test_missing_and_malformed_config_files(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(UserError, match="mapping"):
        load_config(scalar)


def test_a_key_given_twice_in_a_config_file_is_refused(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("data:\n  image_size: 16\ntrain:\n  epochs: 3\ndata:\n  image_size: 32\n")
    with pytest.raises(UserError, match="'data' is given twice \\(line 5\\)"):
        load_config(path)


def test_train_evaluator_takes_the_shipped_recipe_of_a_built_in_dataset(capsys):
    from argparse import Namespace

    from visrep.cli import _with_shipped_config
    from visrep.config import SHIPPED_CONFIGS, shipped_config

    for name in ("digits", "mnist", "cifar10"):
        assert shipped_config("evaluator", name) == SHIPPED_CONFIGS / f"evaluator_{name}.yaml"
    assert shipped_config("evaluator", "fashionmnist") is None  # no recipe shipped: the schema's defaults
    assert shipped_config("evaluator", "./my_images") is None and shipped_config("evaluator", None) is None
    args = _with_shipped_config(Namespace(config=None, source="cifar10", overrides=[]), "evaluator")
    assert args.config == str(SHIPPED_CONFIGS / "evaluator_cifar10.yaml")
    assert "shipped evaluator recipe for cifar10" in capsys.readouterr().out
    args = _with_shipped_config(Namespace(config=None, source=None, overrides=["data.source=mnist"]), "evaluator")
    assert args.config == str(SHIPPED_CONFIGS / "evaluator_mnist.yaml")
    mine = _with_shipped_config(Namespace(config="mine.yaml", source="mnist", overrides=[]), "evaluator")
    assert mine.config == "mine.yaml"  # an explicit --config always wins


def test_every_training_verb_takes_the_shipped_recipe_of_a_built_in_dataset(capsys, monkeypatch):
    """`visrep train gan data.source=mnist` trains with configs/gan_mnist.yaml (the classifier's recipe is
    configs/mnist.yaml); the config each verb hands to its training function is the shipped one."""
    from omegaconf import OmegaConf

    from visrep import cli
    from visrep.config import SHIPPED_CONFIGS, ClassifierConfig, DiffusionConfig, GanConfig, GuideConfig

    seen = {}

    def record(cfg, resume=None):
        seen["config"] = cfg
        return Path("run")

    for verb, function, recipe, schema in (("classifier", "train_classifier", "mnist.yaml", ClassifierConfig),
                                           ("gan", "train_gan", "gan_mnist.yaml", GanConfig),
                                           ("diffusion", "train_diffusion", "diffusion_mnist.yaml", DiffusionConfig),
                                           ("guide", "train_guide", "guide_mnist.yaml", GuideConfig)):
        monkeypatch.setattr(f"visrep.training.{verb}.{function}", record)
        assert cli.main(["train", verb, "mnist"]) == 0
        assert f"config: {SHIPPED_CONFIGS / recipe}" in capsys.readouterr().out
        expected = load_config(SHIPPED_CONFIGS / recipe, ["data.source=mnist"], schema)
        assert OmegaConf.to_container(seen["config"]) == OmegaConf.to_container(expected)


def test_the_shipped_recipes_are_package_data():
    """A non-editable install (a wheel) carries the recipes, so `visrep doctor` and the shipped-recipe lookup work
    there too: SHIPPED_CONFIGS lies inside the package, and pyproject declares its YAML files as package data."""
    import tomllib

    import visrep
    from visrep.config import SHIPPED_CONFIGS

    assert SHIPPED_CONFIGS.parent == Path(visrep.__file__).resolve().parent
    assert len(list(SHIPPED_CONFIGS.glob("*.yaml"))) >= 20
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "configs/*.yaml" in project["tool"]["setuptools"]["package-data"]["visrep"]


def test_shipped_evaluators_differ_from_the_shipped_classifiers_in_family_and_seed():
    from visrep.config import SHIPPED_CONFIGS, ClassifierConfig, load_config
    from visrep.inference.independence import check_architecture_differs

    for name in ("digits", "mnist", "cifar10", "folder"):
        evaluator = load_config(SHIPPED_CONFIGS / f"evaluator_{name}.yaml", schema=ClassifierConfig)
        classifier = load_config(SHIPPED_CONFIGS / f"{name}.yaml", schema=ClassifierConfig)
        check_architecture_differs(evaluator, classifier)  # raises UserError when they share either
        assert evaluator.model.name.startswith("resnet") and not classifier.model.name.startswith("resnet")


def test_every_shipped_config_loads_under_its_schema():
    """A recipe that no longer validates (a renamed key, a bad value) fails here, not in a user's first run."""
    from pathlib import Path

    from visrep.config import ClassifierConfig, DiffusionConfig, GanConfig, GuideConfig, load_config
    from visrep.doctor.report import config_kind
    from visrep.pipeline.config import load_pipeline, stage_config

    schemas = {"classifier": ClassifierConfig, "gan": GanConfig, "diffusion": DiffusionConfig, "guide": GuideConfig}
    shipped = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert any(path.name == "pipeline_folder.yaml" for path in shipped)
    for path in shipped:
        kind = config_kind(path)
        if kind == "pipeline":
            pipeline = load_pipeline(path)
            for stage in pipeline.stages:
                stage_config(pipeline, stage)
        else:
            load_config(path, schema=schemas[kind])


def test_renamed_keys_are_refused_by_name_and_old_runs_still_load(tmp_path):
    """gan.sampler and diffusion.sampler meant different things (an embedding sampler, a reverse-process solver):
    given by a user they are one line naming the new key; in a run saved before the rename they are read as it."""
    from visrep.config import DiffusionConfig, GanConfig
    from visrep.runs import load_run_config

    with pytest.raises(UserError, match="'gan.sampler' was renamed 'gan.embedding_sampler'"):
        load_config(overrides=["gan.sampler=kmeans"], schema=GanConfig)
    path = tmp_path / "d.yaml"
    path.write_text("diffusion:\n  sampler: ddim\n")
    with pytest.raises(UserError, match="'diffusion.sampler' was renamed 'diffusion.solver'"):
        load_config(path, schema=DiffusionConfig)
    run = tmp_path / "old-run"
    run.mkdir()
    (run / "config.yaml").write_text("diffusion:\n  sampler: ddim\n  embedding_sampler: kmeans\n")
    (run / "metrics.json").write_text('{"stage": "diffusion"}')
    old = load_run_config(run, DiffusionConfig)
    assert old.diffusion.solver == "ddim" and old.diffusion.embedding_sampler == "kmeans"
