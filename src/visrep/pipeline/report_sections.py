"""One function per report section, each reading one stage's folder and explaining its numbers.

Section ids are stable (the browser test looks for them): data, classifier, embeddings, evaluator,
generated-<generator>, generative-metrics, timing.
"""

from __future__ import annotations

from pathlib import Path

from visrep.embeddings.near_duplicate_outputs import FIGURE_PAIRS, PAIR_HEADER, cosine_text, headline, pair_rows
from visrep.evaluation.generative_report import lookup, table_rows
from visrep.pipeline.report_render import Image, Section, Table
from visrep.pipeline.state import stage_seconds
from visrep.storage import read_json

GENERATOR_LABELS = {"gan": "GAN", "diffusion": "diffusion model"}
SECTION_IDS = ("summary", "data", "classifier", "embeddings", "evaluator", "generative-metrics", "timing")

METRIC_MEANINGS = [
    ["FID ↓", "Fréchet distance between the evaluator's features of real and generated images (means and "
              "covariances). 0 = identical statistics. Biased upwards at small N: compare with the floor, not with 0."],
    ["KID ↓", "Kernel (MMD²) distance between the same features; unbiased, so the floor sits near 0. The ± is its "
              "standard error: a difference smaller than about twice it is noise."],
    ["precision ↑", "Share of generated images that fall inside the real images' feature neighbourhoods: "
                    "fidelity (are they realistic?)."],
    ["recall ↑", "Share of real images that fall inside the generated images' neighbourhoods: variety "
                 "(does the generator cover what real data shows?)."],
    ["density ↑ / coverage ↑", "Robust variants of precision and recall (Naeem et al. 2020); coverage is the share "
                               "of real images with a generated neighbour close by."],
    ["GAN-test ↑", "The evaluator's accuracy on generated images, judged against the class each was asked for: "
                   "do they look like their class?"],
    ["CAS ↑", "Classification Accuracy Score: a classifier trained only on generated images, tested on real ones."],
    ["per-class KID ↓", "KID within each class, averaged: catches a generator that mixes classes up."],
    ["memorisation", "Share of generated images closer to a training image than real held-out images usually "
                     "are; flagged when it is far above the floor, a sign of copying."],
    ["embedding consistency ↑", "Cosine between the classifier embedding of a generated image and the one it was "
                                "conditioned on (embedding-conditional generators)."],
]


def _read(path: Path) -> dict:
    return read_json(path) if path.is_file() else {}


def _percent(value) -> str:
    return "—" if value is None else f"{100 * float(value):.2f} %"


def dataset_section(folder: Path) -> Section:
    summary = _read(folder / "data_summary.json")
    section = Section("data", "The data")
    if not summary:
        return section.add("The data stage has not written its summary.")
    source, shape = summary["source"], summary["image_shape"]
    section.add(f"Source: {source.get('kind', '?')}{' at ' + source['root'] if source.get('root') else ''}. "
                f"Images are {shape[1]}×{shape[2]} px with {shape[0]} channel(s). The split into train, validation "
                f"and test is stratified and seeded, saved in data/manifest.json: the classifier and the generators "
                f"train on train, settings are chosen on validation, and test is kept for the final numbers.")
    counts = summary["counts"]
    rows = [[name, *(str(counts[split][name]) for split in ("train", "val", "test"))] for name in summary["classes"]]
    rows.append(["all", *(str(summary["totals"][split]) for split in ("train", "val", "test"))])
    section.add(Table(["class", "train", "val", "test"], rows, "Images per class and split."))
    if summary.get("skipped"):
        section.add(f"{len(summary['skipped'])} unreadable or stray file(s) were skipped (listed in "
                    f"data/data_summary.json).")
    if (folder / "examples.png").is_file():
        section.add(Image(folder / "examples.png", "training images, one row per class",
                          "Random training images, one row per class."))
    return section


def _latest_eval(folder: Path, split: str) -> Path | None:
    found = sorted(folder.glob(f"eval-{split}*/metrics.json"), key=lambda path: path.stat().st_mtime)
    return found[-1].parent if found else None


def classifier_section(folder: Path) -> Section:
    section = Section("classifier", "The classifier")
    test = _latest_eval(folder, "test")
    if test is None:
        return section.add("The classifier has not been evaluated yet.")
    metrics = _read(test / "metrics.json")
    val = _read(_latest_eval(folder, "val") / "metrics.json") if _latest_eval(folder, "val") else {}
    config = _read(folder / "metrics.json")
    section.add("A CNN trained to tell the classes apart. Its intermediate layers are the representations the "
                "generators use. Accuracy is the share of images classified right; precision (of the images "
                "predicted as a class, the share that are) and recall (of a class's images, the share found) are "
                "averaged over classes with equal weight (macro). Higher is better for all; chance is 1 / classes.")
    rows = [[name, _percent(block.get("accuracy")), _percent(_macro(block, "precision")),
             _percent(_macro(block, "recall")), _percent(_macro(block, "f1")),
             f"{block['nll']:.3f}" if "nll" in block else "—", str(block.get("n", "—"))]
            for name, block in (("validation", val), ("test", metrics)) if block]
    section.add(Table(["split", "accuracy ↑", "precision ↑", "recall ↑", "F1 ↑", "loss (NLL) ↓", "images"], rows,
                      f"Weights: {metrics.get('weights', '?')}; trained {config.get('epochs', '?')} epochs in "
                      f"{config.get('train_seconds', 0):.0f} s."))
    for name, alt, caption in (
            ("confusion_matrix.png", "confusion matrix on the test split",
             "Confusion matrix (test): rows are true classes, columns predicted ones; a strong diagonal is good."),
            ("curves.png", "training and validation loss and accuracy per epoch",
             "Loss and accuracy per epoch on train and validation: validation loss rising while train loss falls "
             "means overfitting.")):
        path = test / name if (test / name).is_file() else folder / name
        if path.is_file():
            section.add(Image(path, alt, caption))
    return section


def _macro(block: dict, key: str):
    value = block.get(key)
    return value.get("macro") if isinstance(value, dict) else None


def embeddings_section(folder: Path) -> Section:
    section = Section("embeddings", "Which layer carries the most transferable information")
    table = _read(folder / "analysis.json")
    if not table.get("layers"):
        return section.add("No embedding analysis was written.")
    section.add("Each layer's output, pooled to one vector per image, tested without retraining the CNN: kNN is "
                "the accuracy of voting among the 10 nearest training images; the linear probe is a logistic "
                "regression trained on the frozen train embeddings. High accuracy on val/test means the layer "
                "separates the classes in a way that transfers to new images; silhouette (−1 to 1) measures how "
                "tight and apart the class clusters are. Higher is better for all three.")
    rows = [[layer["layer"], str(layer["dim"]), _percent(layer["knn"].get("val")), _percent(layer["knn"].get("test")),
             _percent(layer["probe"].get("val")), _percent(layer["probe"].get("test")),
             f"{layer['silhouette']:.3f}" if layer.get("silhouette") is not None else "—"]
            for layer in table["layers"]]
    section.add(Table(["layer", "dim", "kNN val ↑", "kNN test ↑", "probe val ↑", "probe test ↑", "silhouette ↑"],
                      rows, "Layers from input (top) to output (bottom)."))
    best = max(table["layers"], key=lambda layer: layer["probe"].get("val") or layer["probe"].get("test") or 0)
    map_file = folder / best["layer"] / best.get("map", {}).get("file", "map.png")
    if map_file.is_file():
        section.add(Image(map_file, f"2-D map of the {best['layer']} embeddings of test images, coloured by class",
                          f"The layer with the best validation probe ({best['layer']}), its test images projected "
                          f"to 2-D: well-separated colour clusters mean the classes are easy to tell apart there."))
    return section.add(*_near_duplicate_blocks(folder, table["layers"]))


def _near_duplicate_blocks(folder: Path, layers: list[dict]) -> list:
    """The near-duplicates found at the deepest searched layer: a sentence, the pairs, their thumbnails."""
    searched = [layer for layer in layers if layer.get("near_duplicates")]
    if not searched:
        return []
    name, summary = searched[-1]["layer"], searched[-1]["near_duplicates"]
    blocks = [headline(summary, name) + " A near-duplicate is the same photo saved twice (re-encoded, resized or "
              "slightly cropped): each val and test image is compared with its nearest training image in the "
              "classifier's embedding. A copy in val or test makes its scores optimistic, since the network has seen "
              "that photo; a copy inside train only counts the photo twice. Rule: " + summary["rule"] + "."]
    pairs = summary["cross_split"]["pairs"][:FIGURE_PAIRS]  # the rows the figure shows
    if pairs:
        more = summary["cross_split"]["count"] - len(pairs)
        blocks.append(Table(PAIR_HEADER, pair_rows(pairs), "Val/test images and their nearest training image, most "
                            "similar first; threshold: the lowest cosine that counts for that class"
                            + (f"; {more} more in {name}/{summary['file']}." if more > 0 else ".")))
    figure = folder / name / (summary.get("figure") or "")
    if summary.get("figure") and figure.is_file():
        blocks.append(Image(figure, "pairs of near-duplicate images: a validation or test image beside its nearest "
                                    "training image", "The closest pairs: the val/test image (left) beside its "
                                    "nearest training image (right), with the cosine similarity and both file ids; a "
                                    "red frame means the two carry different classes."))
    inside = summary["within_train"]["pairs"]
    if inside:
        blocks.append("Inside train, most similar first: " + "; ".join(
            f"{pair['id']} ~ {pair['train_id']} ({cosine_text(pair['similarity'])})" for pair in inside) + ".")
    return blocks


def evaluator_section(folder: Path) -> Section:
    section = Section("evaluator", "The independent evaluator")
    record = _read(folder / "evaluator.json")
    if not record:
        return section.add("The evaluator has not finished.")
    conditioning = record.get("conditioning") or {}
    section.add(f"The network that scores the generators: {record['model']} (seed {record['seed']}), trained on "
                f"real images only. Test accuracy {_percent(record.get('test_accuracy'))}: a judge that "
                f"recognises real images this well can tell when generated ones are off.")
    if conditioning:
        section.add(f"It differs from the classifier that conditioned the generators ({conditioning.get('model')}, "
                    f"seed {conditioning.get('seed')}) in architecture, seed and weights (sha256 "
                    f"{record['weights_sha256'][:12]}… vs {conditioning.get('weights_sha256', '')[:12]}…), so no "
                    f"generator is graded by the network that shaped it.")
    return section


def generated_section(name: str, folder: Path, pictures: list, figures: Path) -> Section:
    label = GENERATOR_LABELS.get(name, name)
    config = _read(folder / "generator.json")
    section = Section(f"generated-{name}", f"Images from the {label}")
    section.add(f"Conditioning: {config.get('conditioning', '?')}. All images below come from the run folder "
                f"{folder.name}/ alone, as `visrep sample` draws them.")
    if config.get("condition_layer"):
        section.add(layer_sentence(config["condition_layer"]))
    for picture in pictures:
        section.add(Image(figures / picture.file, picture.title, picture.caption))
    return section


def layer_sentence(choice: dict) -> str:
    """Which classifier layer the embedding conditions come from, why, and what the analysis ranked first."""
    text = f"The embedding conditions are the classifier's '{choice['layer']}' layer ({choice['rule']})."
    if choice.get("analysis_best") and choice["analysis_best"] != choice["layer"]:
        text += (f" The embeddings analysis ranks '{choice['analysis_best']}' first by val linear probe "
                 f"({_percent(choice.get('analysis_best_val_probe'))}); set the stage's layer=best to use it.")
    elif choice.get("analysis_best"):
        text += " It is also the embeddings analysis's best layer by val linear probe."
    source = choice.get("embeddings")
    text += (" The training embeddings were computed by the generator itself." if source == "computed"
             else " The training embeddings and condition bank were read from the embeddings stage." if source
             else "")
    return text


def metrics_section(folder: Path, generators: list[str]) -> Section:
    section = Section("generative-metrics", "How good are the generated images")
    section.add("Scored by the independent evaluator on N generated images against N held-out real test images. "
                "The 'real-vs-real floor' column is what each metric gives for real training images in place of "
                "generated ones: the best a generator can honestly reach. ↓ lower is better, ↑ higher is better.")
    for name in generators:
        metrics = _read(folder / name / "metrics.json")
        if not metrics:
            section.add(f"{name}: not scored.")
            continue
        header, rows = table_rows(metrics)
        notes = "; ".join(metrics.get("warnings", []))
        section.add(Table([f"{GENERATOR_LABELS.get(name, name)}: metric", *header[1:]],
                          [[cell.replace("**", "") for cell in row] for row in rows],
                          f"N = {metrics['n']} per side. {notes}".strip()))
    section.add(Table(["metric", "what it means"], METRIC_MEANINGS))
    return section


def timing_section(pipeline) -> Section:
    section = Section("timing", "Time per stage")
    rows, total = [], 0.0
    for stage in pipeline.stages:
        seconds = stage_seconds(pipeline.stage_dir(stage))
        if stage == "report" or seconds is None:
            rows.append([stage, "—" if stage != "report" else "(this page)"])
            continue
        total += seconds
        rows.append([stage, f"{seconds:.1f} s"])
    rows.append(["total", f"{total:.1f} s"])
    return section.add(Table(["stage", "wall time"], rows, "Wall-clock seconds of each stage's last run on this "
                                                               "machine (a skipped stage keeps its earlier time)."))


def summary_section(pipeline, generators: list[str]) -> Section:
    """The headline numbers, each with what good looks like; the sections below explain them."""
    folder = pipeline.stage_dir
    has = pipeline.stages  # a folder left by an earlier pipeline with other stages is not this one's
    rows = []
    test = _latest_eval(folder("classifier"), "test") if "classifier" in has else None
    if test is not None:
        metrics = _read(test / "metrics.json")
        classes = len((metrics.get("precision") or {}).get("per_class") or {}) or 1
        rows.append(["classifier accuracy (test)", _percent(metrics.get("accuracy")),
                     f"higher is better; guessing gives {_percent(1 / classes)}"])
    layers = (_read(folder("embeddings") / "analysis.json").get("layers") or []) if "embeddings" in has else []
    if layers:
        best = max(layers, key=lambda layer: layer["probe"].get("val") or layer["probe"].get("test") or 0)
        rows.append([f"most transferable layer: {best['layer']} (linear probe, test)",
                     _percent(best["probe"].get("test")), "higher is better; chosen on validation"])
    record = _read(folder("evaluator") / "evaluator.json") if "evaluator" in has else {}
    if record:
        rows.append(["independent evaluator accuracy (test)", _percent(record.get("test_accuracy")),
                     "the judge of the generators: higher makes its verdicts sharper"])
    for name in generators:
        metrics = _read(folder("generative") / name / "metrics.json") if "generative" in has else {}
        label = GENERATOR_LABELS.get(name, name)
        for title, path, better in (("GAN-test (do the images show their class?)", ("gan_test", "accuracy"),
                                     "higher is better; the floor is the evaluator on real test images: well "
                                     "above it, the images are easier than real ones (prototypes; check recall)"),
                                    ("KID (distance to real images)", ("kid",),
                                     "lower is better; the floor is ~0; gaps under 2 standard errors are noise")):
            value, floor = lookup(metrics.get("model"), path), lookup(metrics.get("floor"), path)
            if value is not None:
                rows.append([f"{label}: {title}", f"{_plain(value)} (floor {_plain(floor)})", better])
    return Section("summary", "Summary").add(Table(["what", "value", "what good looks like"], rows))


def _plain(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict):
        return f"{value['value']:.3g} ± {value['std_error']:.2g}"
    return f"{value:.4g}"
