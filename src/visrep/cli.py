"""The ``visrep`` command: one verb per stage, each a thin layer over the Python API.

User mistakes (bad path, bad config key, unusable data) print one ``error:`` line and exit 2.
"""

from __future__ import annotations

import argparse
import sys

from visrep.errors import UserError


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (sections run:, data:, ...)")
    parser.add_argument("--name", help="run directory name under runs/ (same as run.name=...)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run of that name")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.image_size=32")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visrep", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    data = verbs.add_parser("data", help="inspect and prepare datasets").add_subparsers(dest="action", required=True)
    inspect = data.add_parser("inspect", help="class counts per split, image sizes, skipped files")
    inspect.add_argument("source", nargs="?", help="digits | mnist | fashionmnist | cifar10 | path to an image folder")
    _add_common(inspect)

    train = verbs.add_parser("train", help="train a stage").add_subparsers(dest="action", required=True)
    classifier = train.add_parser("classifier", help="train the CNN classifier")
    classifier.add_argument("--resume", metavar="RUN", help="continue the run in this directory from its last checkpoint")
    _add_common(classifier)

    evaluate = verbs.add_parser("evaluate", help="evaluate a trained stage").add_subparsers(dest="action", required=True)
    eval_classifier = evaluate.add_parser("classifier", help="accuracy, P/R/F1, confusion matrix, calibration, curves")
    eval_classifier.add_argument("run", help="a classifier run directory")
    eval_classifier.add_argument("--split", default="test", help="val | test (default: test)")
    eval_classifier.add_argument("--tta", action="store_true", help="flip test-time augmentation")
    eval_classifier.add_argument("--weights", default="best", help="best | last")

    models = verbs.add_parser("models", help="list the classifier architectures")
    models.set_defaults(action=None)

    demo = verbs.add_parser("demo", help="the main job on the embedded digits data")
    _add_common(demo)
    return parser


def load_cli_config(args, schema=None):
    from visrep.config import Config, load_config

    overrides = list(args.overrides or [])
    source = getattr(args, "source", None)
    if source and "=" in source:  # `visrep data inspect data.image_size=16`: no source given
        overrides.insert(0, source)
        source = None
    if source:
        overrides.insert(0, f"data.source={source}")
    if args.name:
        overrides.append(f"run.name={args.name}")
    if args.overwrite:
        overrides.append("run.overwrite=true")
    return load_config(args.config, overrides, schema or Config)


def cmd_data_inspect(args) -> int:
    from visrep.data.inspect import format_summary, summarize
    from visrep.data.manifest import write_manifest
    from visrep.data.prepare import prepare_data
    from visrep.runs import create_run

    cfg = load_cli_config(args)
    data = prepare_data(cfg.data)
    run = create_run(cfg, "inspect")
    write_manifest(data.manifest, run.file("manifest.json"))
    run.write_json("normalization.json", data.normalization.to_dict())
    summary = summarize(data)
    run.write_json("data_summary.json", summary)
    print(format_summary(summary))
    return 0


def cmd_demo(args) -> int:
    from visrep.config import ClassifierConfig
    from visrep.pipeline import run_demo

    return run_demo(load_cli_config(args, ClassifierConfig))


def cmd_train_classifier(args) -> int:
    from pathlib import Path

    from visrep.config import ClassifierConfig
    from visrep.runs import load_run_config
    from visrep.training.classifier import train_classifier

    if args.resume:
        if args.config or args.overrides or args.name:
            raise UserError("--resume continues a run with its own saved config; drop --config, --name and overrides")
        cfg = load_run_config(Path(args.resume), ClassifierConfig)
        train_classifier(cfg, resume=Path(args.resume))
        return 0
    train_classifier(load_cli_config(args, ClassifierConfig))
    return 0


def cmd_evaluate_classifier(args) -> int:
    from pathlib import Path

    from visrep.evaluation.classifier_eval import evaluate_classifier, format_metrics

    metrics = evaluate_classifier(Path(args.run), args.split, tta_flip=True if args.tta else None, weights=args.weights)
    print(format_metrics(metrics))
    return 0


def cmd_models(args) -> int:
    from visrep.models import list_models

    print("\n".join(list_models()))
    return 0


COMMANDS = {("data", "inspect"): cmd_data_inspect, ("demo", None): cmd_demo,
            ("train", "classifier"): cmd_train_classifier, ("evaluate", "classifier"): cmd_evaluate_classifier,
            ("models", None): cmd_models}


def parse_args(argv: list[str] | None):
    """Like parse_args, but overrides may also come after options (``--name x data.seed=1``)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    stray = [item for item in extra if item.startswith("-") or "=" not in item]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = list(args.overrides or []) + extra
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = COMMANDS[(args.verb, getattr(args, "action", None))]
    try:
        return command(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
