"""The ``visrep`` command: one verb per stage, each a thin layer over the Python API.

User mistakes (bad path, bad config key, unusable data) print one ``error:`` line and exit 2.
"""

from __future__ import annotations

import argparse
import sys

from visrep.errors import UserError
from visrep.hardware.threads import configure_process


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (sections run:, data:, ...)")
    parser.add_argument("--name", help="run directory name under runs/ (same as run.name=...)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run of that name")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.image_size=32")


def _add_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", nargs="?", metavar="SOURCE",
                        help="the data (same as data.source=...): digits | mnist | fashionmnist | cifar10 | "
                             "path to an image folder")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visrep", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    data = verbs.add_parser("data", help="inspect and prepare datasets").add_subparsers(dest="action", required=True)
    inspect = data.add_parser("inspect", help="class counts per split, image sizes, skipped files")
    _add_source(inspect)
    _add_common(inspect)

    train = verbs.add_parser("train", help="train a stage").add_subparsers(dest="action", required=True)
    classifier = train.add_parser("classifier", help="train the CNN classifier")
    classifier.add_argument("--resume", metavar="RUN", help="continue the run in this directory from its last checkpoint")
    classifier.add_argument("--lr-find", action="store_true",
                            help="train nothing: a learning-rate range test (~100 steps) that suggests train.lr")
    _add_source(classifier)
    _add_common(classifier)
    evaluator = train.add_parser("evaluator", help="train the independent evaluator network (real data only)")
    evaluator.add_argument("--resume", metavar="RUN", help="continue an interrupted evaluator run from its last checkpoint")
    evaluator.add_argument("--conditioning", metavar="RUN",
                           help="the conditioning classifier run it must differ from (architecture, seed, weights)")
    _add_source(evaluator)
    _add_common(evaluator)
    gan = train.add_parser("gan", help="train a GAN conditioned and guided by a classifier run's representations")
    gan.add_argument("--resume", metavar="RUN", help="continue an interrupted GAN run from its last checkpoint")
    _add_source(gan)
    _add_common(gan)
    diffusion = train.add_parser("diffusion", help="train a diffusion model conditioned on a classifier run's "
                                 "representations")
    diffusion.add_argument("--resume", metavar="RUN", help="continue an interrupted diffusion run from its last "
                           "checkpoint")
    _add_source(diffusion)
    _add_common(diffusion)
    guide = train.add_parser("guide", help="fine-tune a noise-aware copy of a classifier run, for classifier guidance")
    guide.add_argument("--resume", metavar="RUN", help="continue an interrupted guide run from its last checkpoint")
    _add_source(guide)
    _add_common(guide)

    evaluate = verbs.add_parser("evaluate", help="evaluate a trained stage").add_subparsers(dest="action", required=True)
    eval_classifier = evaluate.add_parser("classifier", help="accuracy, P/R/F1, confusion matrix, calibration, curves")
    eval_classifier.add_argument("run", help="a classifier run directory")
    eval_classifier.add_argument("--split", default="test", help="val | test (default: test)")
    tta = eval_classifier.add_mutually_exclusive_group()
    tta.add_argument("--tta", action="store_true", help="flip test-time augmentation")
    tta.add_argument("--no-tta", action="store_true",
                     help="no test-time augmentation, whatever the run's eval config says")
    eval_classifier.add_argument("--tta-translate", type=int, metavar="PIXELS",
                                 help="also average views shifted by ±PIXELS (default: the run's eval.tta_translate)")
    eval_classifier.add_argument("--weights", help="best | last (default: the run's eval.weights)")
    eval_classifier.add_argument("--allow-partial", action="store_true",
                                 help="evaluate a run that has not finished training (its mid-training weights)")
    _add_generated_parser(evaluate)

    _add_embed_parsers(verbs, evaluate)

    _add_sample_parser(verbs)

    models = verbs.add_parser("models", help="list the classifier architectures and what image sizes they suit")
    models.add_argument("--all", action="store_true", help="also list every torchvision architecture (tv:<arch>)")
    models.set_defaults(action=None)

    doctor = verbs.add_parser("doctor", help="this machine: CPU flags, what auto picks, measured speed, "
                              "estimated time of the shipped configs")
    doctor.add_argument("--configs", metavar="DIR", help="a folder of configs to estimate (default: the shipped recipes)")
    doctor.add_argument("--seconds", type=float, default=2.5, help="measuring time per precision (default: 2.5)")
    doctor.set_defaults(action=None)

    _add_pipeline_parsers(verbs)
    return parser


def _add_pipeline_parsers(verbs) -> None:
    pipeline = verbs.add_parser("pipeline", help="every stage from one config, finished stages skipped, then the "
                                "report")
    pipeline.add_argument("--config", help="pipeline YAML (configs/pipeline_<dataset>.yaml)")
    pipeline.add_argument("--only", metavar="STAGES", help="comma-separated stages to run (their inputs must be done)")
    pipeline.add_argument("--from", dest="start", metavar="STAGE", help="run this stage and every later one")
    pipeline.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.source=~/photos "
                          "gan.train.steps=200")
    pipeline.set_defaults(action=None)
    demo = verbs.add_parser("demo", help="the pipeline on the embedded digits data (configs/pipeline_digits.yaml)")
    demo.add_argument("--only", metavar="STAGES", help="comma-separated stages to run")
    demo.add_argument("--from", dest="start", metavar="STAGE", help="run this stage and every later one")
    demo.add_argument("overrides", nargs="*", help="dotted overrides, e.g. run.name=demo2")
    demo.set_defaults(action=None, config=None)


def _add_sample_parser(verbs) -> None:
    sample = verbs.add_parser("sample", help="generate images from a trained generator run")
    sample.add_argument("run", help="a generator run directory (visrep train gan | diffusion)")
    what = sample.add_mutually_exclusive_group()
    what.add_argument("--class", dest="class_", metavar="CLASS", help="a class name or index")
    what.add_argument("--like", metavar="IMAGE", help="variations of this image (embedding-conditional generators)")
    what.add_argument("--interpolate", nargs=2, metavar=("A", "B"), help="from image A to image B")
    sample.add_argument("-n", "--n", type=int, default=64, help="images (interpolation: steps) to generate (default: 64)")
    sample.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    sample.add_argument("--out", metavar="DIR", help="output folder (default: <run>/generated/<stamp>); the same "
                        "command again resumes an unfinished one")
    sample.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists (only a "
                        "folder `visrep sample` wrote)")
    sample.add_argument("--device", default="auto", help="auto (CUDA, else CPU; mps only when named) | cpu | cuda | mps; under "
                        "torchrun each process generates its share of the draw blocks")
    diffusion = sample.add_argument_group("diffusion runs (default: the run's diffusion.solver / sample_steps / "
                                          "guidance)")
    diffusion.add_argument("--solver", help="ddpm | ddim | dpm++ (the reverse-process solver)")
    diffusion.add_argument("--sampler", dest="renamed_sampler", help=argparse.SUPPRESS)  # refused: renamed --solver
    diffusion.add_argument("--steps", type=int, help="solver steps")
    diffusion.add_argument("--guidance", type=float, help="classifier-free guidance scale s: 0 unconditional, "
                           "1 conditional, > 1 stronger")
    diffusion.add_argument("--guidance-interval", nargs=2, type=float, metavar=("LOW", "HIGH"),
                           help="classifier-free guidance only at timesteps in [LOW·T, HIGH·T] (fractions of T)")
    diffusion.add_argument("--classifier-guidance", metavar="GUIDE_RUN",
                           help="classifier guidance by this noise-aware guide (visrep train guide)")
    diffusion.add_argument("--classifier-scale", type=float, help="classifier guidance scale (default 1 with a guide)")
    sample.set_defaults(action=None)


def _add_generated_parser(evaluate) -> None:
    generated = evaluate.add_parser("generated", help="FID/KID/PRDC, GAN-test, CAS, memorisation... of any images "
                                    "in an independent evaluator's feature space")
    generated.add_argument("--evaluator", metavar="RUN", help="evaluator run (visrep train evaluator)")
    generated.add_argument("--fake", metavar="PATH", help="folder of images | .npz | generator run directory")
    generated.add_argument("--real", metavar="SPEC", help="test (default) | val | <source or run>:<val|test>")
    generated.add_argument("-n", type=int, help="images per side (default: min(10000, available))")
    generated.add_argument("--in-loop", nargs="?", const="auto", metavar="RUN",
                           help="also score with the conditioning CNN (labelled optimistic); no RUN: the one "
                                "generator.json names")
    generated.add_argument("--inception-weights", metavar="FILE", help="local Inception weights for Inception FID/KID")
    generated.add_argument("--no-cas", action="store_true", help="skip the Classification Accuracy Score")
    generated.add_argument("--device", help="auto (default: CUDA, else CPU; mps only when named) | cpu | cuda | mps; under "
                           "torchrun the features are extracted by every process, batch by batch, and gathered")
    _add_common(generated)


def _add_embed_parsers(verbs, evaluate) -> None:
    embed = verbs.add_parser("embed", help="extract intermediate-layer embeddings of a classifier run, and analyse them")
    embed.add_argument("run", help="a classifier run directory")
    embed.add_argument("--layers", help="comma-separated layer names, 'stages' or 'all' (default: penultimate)")
    embed.add_argument("--splits", help="comma-separated splits (default: train,val,test)")
    embed.add_argument("--pooling", help="avg | max | flatten | spatial (default: avg)")
    embed.add_argument("--l2", action="store_true", help="L2-normalise each embedding")
    embed.add_argument("--weights", help="best | last (default: best)")
    embed.add_argument("--out", help="embeddings folder (default: <run>/embeddings)")
    embed.add_argument("--overwrite", action="store_true", help="replace existing embeddings of these layers")
    embed.add_argument("--no-analysis", action="store_true", help="extract and save only")
    embed.add_argument("--allow-partial", action="store_true",
                       help="embed a run that has not finished training (its mid-training weights)")
    embed.add_argument("--config", help="YAML with embed: and analysis: sections")
    embed.add_argument("overrides", nargs="*", help="dotted overrides, e.g. analysis.knn_k=20 embed.batch_size=256")
    embed.set_defaults(action=None)
    analyse = evaluate.add_parser("embeddings", help="(re)analyse stored embeddings: kNN, probe, maps, retrieval")
    analyse.add_argument("source", help="a classifier run or an embeddings folder")
    analyse.add_argument("--layers", help="comma-separated layers (default: every stored layer)")
    analyse.add_argument("--config", help="YAML with an analysis: section")
    analyse.add_argument("overrides", nargs="*", help="dotted overrides, e.g. analysis.knn_k=20")


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


def cmd_pipeline(args) -> int:
    from visrep.pipeline import run_pipeline

    run_pipeline(args.config, args.overrides, only=args.only, start=args.start)
    return 0


def cmd_demo(args) -> int:
    from visrep.config import SHIPPED_CONFIGS

    args.config = SHIPPED_CONFIGS / "pipeline_digits.yaml"
    return cmd_pipeline(args)


def cmd_train_classifier(args) -> int:
    from visrep.config import ClassifierConfig
    from visrep.training.classifier import train_classifier

    if args.lr_find:
        if args.resume:
            raise UserError("--lr-find tests learning rates from a fresh model: it does not go with --resume")
        from visrep.training.lr_find import find_lr

        find_lr(load_cli_config(_with_shipped_config(args, "classifier"), ClassifierConfig))
        return 0
    return _train_or_resume(args, ClassifierConfig, train_classifier, "classifier")


def _check_resume_flags(args) -> None:
    """A resumed run keeps its own saved config: anything that would change it is a mistake, not a wish."""
    if args.config or args.overrides or args.name or args.overwrite or getattr(args, "source", None):
        raise UserError("--resume continues a run with its own saved config; drop SOURCE, --config, --name, "
                        "--overwrite and overrides")


def cmd_evaluate_classifier(args) -> int:
    from pathlib import Path

    from visrep.evaluation.classifier_eval import evaluate_classifier, format_metrics

    tta_flip = False if args.no_tta else (True if args.tta else None)
    shift = 0 if args.no_tta and args.tta_translate is None else args.tta_translate
    metrics = evaluate_classifier(Path(args.run), args.split, tta_flip=tta_flip, weights=args.weights,
                                  tta_translate=shift, allow_partial=args.allow_partial)
    print(format_metrics(metrics))
    return 0


def cmd_train_evaluator(args) -> int:
    from pathlib import Path

    from visrep.config import ClassifierConfig
    from visrep.evaluation.classifier_eval import evaluator_test_report
    from visrep.training.evaluator import train_evaluator

    conditioning = Path(args.conditioning) if args.conditioning else None
    # the evaluator's own report (eval-test/) beside evaluator.json, from the prediction that gives its accuracy
    if args.resume:  # --conditioning may be given again: it is checked as on a fresh run
        _check_resume_flags(args)
        run_path = train_evaluator(None, conditioning, resume=Path(args.resume), test_report=evaluator_test_report)
    else:
        run_path = train_evaluator(load_cli_config(_with_shipped_config(args, "evaluator"), ClassifierConfig),
                                   conditioning, test_report=evaluator_test_report)
    if _is_main_process():  # under torchrun rank 0 wrote the record and the report
        print(f"evaluator run: {run_path}")
    return 0


def _leave_process_group() -> None:
    from visrep.hardware.distributed import leave_process_group

    leave_process_group()


def _is_main_process() -> bool:
    from visrep.hardware.distributed import current_info

    return current_info().is_main


def _with_shipped_config(args, stage: str):
    """Without --config, a built-in dataset (SOURCE or data.source=) gets its shipped configs/<stage>_<name>.yaml."""
    from visrep.config import shipped_config

    if args.config:
        return args
    sources = [args.source] if args.source and "=" not in args.source else []
    sources += [item.split("=", 1)[1] for item in [args.source or "", *(args.overrides or [])]
                if item.startswith("data.source=")]
    path = shipped_config(stage, sources[-1]) if sources else None
    if path is not None:
        print(f"config: {path} (the shipped {stage} recipe for {sources[-1]}; --config to choose another)")
        args.config = str(path)
    return args


def _train_or_resume(args, schema, train, label: str) -> int:
    """A training verb: the run's own saved config when resuming, else the CLI config (a built-in dataset's
    shipped recipe without --config)."""
    from pathlib import Path

    from visrep.runs import load_run_config

    if args.resume:
        _check_resume_flags(args)
        run_path = train(load_run_config(Path(args.resume), schema), resume=Path(args.resume))
    else:
        run_path = train(load_cli_config(_with_shipped_config(args, label), schema))
    if _is_main_process():
        print(f"{label} run: {run_path}")
    return 0


def cmd_train_gan(args) -> int:
    from visrep.config import GanConfig
    from visrep.training.gan import train_gan

    return _train_or_resume(args, GanConfig, train_gan, "gan")


def cmd_train_diffusion(args) -> int:
    from visrep.config import DiffusionConfig
    from visrep.training.diffusion import train_diffusion

    return _train_or_resume(args, DiffusionConfig, train_diffusion, "diffusion")


def cmd_train_guide(args) -> int:
    from visrep.config import GuideConfig
    from visrep.training.guide import train_guide

    return _train_or_resume(args, GuideConfig, train_guide, "guide")


def cmd_sample(args) -> int:
    import time
    from pathlib import Path

    from visrep.generate.chunked import write_plan_folder
    from visrep.generate.generator_run import load_generator_run
    from visrep.generate.request import SampleRequest, sampling_used
    from visrep.hardware.distributed import resolve_device, setup_distributed

    if args.renamed_sampler is not None:
        raise UserError("--sampler was renamed --solver (ddpm | ddim | dpm++): one name per meaning, since a "
                        "generator's embedding sampler is gaussian | kmeans")
    request = SampleRequest(args.n, args.seed, args.class_, args.like, args.interpolate, args.solver, args.steps,
                            args.guidance, args.guidance_interval, args.classifier_guidance, args.classifier_scale)
    request.check()  # after parsing, so that each mistake is one `error:` line (argparse's own print a usage block)
    device = resolve_device(args.device, key="--device")
    dist = setup_distributed(device)
    run = load_generator_run(Path(args.run), device, sampling=request.sampling_overrides())
    run.dist = dist  # under torchrun: each rank its share of the blocks, gathered (the images of one process)
    plan = request.plan(run)
    out = Path(args.out) if args.out else run.path / "generated" / time.strftime("%Y%m%d-%H%M%S")  # rank 0's counts
    # chunk by chunk, resumable: the same command again finishes a killed one (visrep.generate.chunked)
    write_plan_folder(out, run, plan, args.overwrite, guide=args.classifier_guidance, sampling=sampling_used(run))
    if dist.is_main:
        print(f"{plan.description}: {out}")
    return 0


def cmd_evaluate_generated(args) -> int:
    from visrep.config import GenerativeEvalConfig
    from visrep.evaluation.generative import evaluate_generated
    from visrep.evaluation.generative_report import format_markdown

    if args.in_loop and "=" in args.in_loop:  # `--in-loop run.root=x`: the override is not the RUN
        args.overrides, args.in_loop = [args.in_loop, *(args.overrides or [])], "auto"
    cfg = load_cli_config(args, GenerativeEvalConfig)
    flags = {"evaluator": args.evaluator, "fake": args.fake, "real": args.real, "n": args.n,
             "in_loop": args.in_loop, "inception_weights": args.inception_weights, "device": args.device}
    for key, value in flags.items():  # set directly: paths need no escaping from the dotted-override grammar
        if value is not None:
            cfg.generative[key] = value
    if args.no_cas:
        cfg.generative.cas = False
    run_path, metrics = evaluate_generated(cfg)
    if _is_main_process():
        print(format_markdown(metrics))
        print(f"run directory: {run_path}")
        for line in metrics.get("alerts", []):  # in the report too; repeated where the user reads the console
            print(f"warning: {line}", file=sys.stderr)
    return 0


def cmd_embed(args) -> int:
    from pathlib import Path

    from visrep.config import EmbedConfig, load_config
    from visrep.embeddings import embed_classifier_run
    from visrep.embeddings.report import format_table
    from visrep.representations.store import read_json

    cfg = load_config(args.config, args.overrides, EmbedConfig)
    flags = {"layers": _comma_list(args.layers), "splits": _comma_list(args.splits), "pooling": args.pooling,
             "weights": args.weights, "out": args.out, "l2_normalize": args.l2 or None,
             "overwrite": args.overwrite or None, "allow_partial": args.allow_partial or None}
    for key, value in flags.items():  # set directly: paths need no escaping from the dotted-override grammar
        if value is not None:
            cfg.embed[key] = value
    if args.no_analysis:
        cfg.analysis.enabled = False
    out = embed_classifier_run(Path(args.run), cfg)
    if cfg.analysis.enabled:
        print(format_table(read_json(out / "analysis.json")))
    print(f"embeddings: {out}")
    return 0


def cmd_evaluate_embeddings(args) -> int:
    from pathlib import Path

    from visrep.config import EmbedConfig, load_config
    from visrep.embeddings import analyse_embeddings
    from visrep.embeddings.report import format_table

    cfg = load_config(args.config, args.overrides, EmbedConfig)
    print(format_table(analyse_embeddings(Path(args.source), cfg.analysis, _comma_list(args.layers))))
    return 0


def _comma_list(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def cmd_doctor(args) -> int:
    from pathlib import Path

    from visrep.doctor import report

    if args.configs:
        configs = Path(args.configs)
        if not configs.is_dir():
            raise UserError(f"--configs: no such folder: {configs}")
    else:
        from visrep.config import SHIPPED_CONFIGS

        configs = SHIPPED_CONFIGS
    if args.seconds <= 0:
        raise UserError(f"--seconds must be > 0 (got {args.seconds})")
    print(report(configs, args.seconds))
    return 0


# Which model suits which images: what `visrep models` says beside each built-in name.
MODEL_HINTS = {"fastcnn": "8-64 px, the fast default on a CPU (icons, digits, small photos)",
               "airbench": "32 px RGB, CIFAR-style photos (airbench94's net: whitening stem fitted to the data)",
               "resnet18_cifar": "16-64 px, a deeper residual net with a CIFAR stem (slower, stronger)"}


def cmd_models(args) -> int:
    from visrep.models import list_models

    torchvision = [name for name in list_models("classifier") if name.startswith("tv:")]
    for name in list_models("classifier"):
        if not name.startswith("tv:"):
            print(f"{name:16s} {MODEL_HINTS.get(name, '')}".rstrip())
    print(f"tv:<arch>        {len(torchvision)} torchvision classifiers, random init (model.pretrained_path loads "
          f"local weights): for larger images, e.g. 64-224 px photos")
    if args.all:
        print("\n".join(f"  {name}" for name in torchvision))
    else:
        print("                 (visrep models --all lists them)")
    print("\n".join(PRETRAINED_FILES))
    return 0


# What `visrep models` says of model.pretrained_path: which files each family takes (visrep.models.pretrained).
PRETRAINED_FILES = (
    "",
    "pretrained files (model.pretrained_path; local, never downloaded; fine-tuned head first, then all):",
    "  tv:<arch>      a torchvision state dict of that architecture (.pth/.pt/.safetensors); timm's ResNets share",
    "                 torchvision's keys, so the tv: ResNets take those too. ImageNet statistics, 224 px by default",
    "  any model      a visrep run's best/last.safetensors of the same architecture and options (its .json and",
    "                 normalization.json beside it): that run's statistics and image size",
)


COMMANDS = {("data", "inspect"): cmd_data_inspect, ("demo", None): cmd_demo,
            ("train", "classifier"): cmd_train_classifier, ("evaluate", "classifier"): cmd_evaluate_classifier,
            ("models", None): cmd_models, ("train", "evaluator"): cmd_train_evaluator,
            ("evaluate", "generated"): cmd_evaluate_generated, ("train", "gan"): cmd_train_gan,
            ("sample", None): cmd_sample, ("train", "diffusion"): cmd_train_diffusion,
            ("train", "guide"): cmd_train_guide}

COMMANDS.update({("pipeline", None): cmd_pipeline, ("doctor", None): cmd_doctor, ("embed", None): cmd_embed,
                 ("evaluate", "embeddings"): cmd_evaluate_embeddings})


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
        configure_process()  # raises here, as one line, for a bad VISREP_THREADS / OMP_NUM_THREADS
        status = command(args)
        _leave_process_group()
        return status
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
