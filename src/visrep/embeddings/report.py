"""The per-layer comparison table: ``analysis.md`` (for people) and ``analysis.json`` (for code).

Rows follow the model's layer order (input → output); accuracies are shown in percent. The
classifier's own accuracy (its head, same weights, same images) is the reference line: a probe
on "penultimate" should come close to it, earlier layers show how much a linear read-out loses.
Below the table: the near-duplicate images found at the deepest analysed layer, or that none were.
"""

from __future__ import annotations

import math
from pathlib import Path

from visrep.embeddings.near_duplicate_outputs import markdown_lines
from visrep.representations.store import SPLIT_NAMES, layer_folder, read_json, stored_layers, write_json
from visrep.runs import atomic_write_text

COLUMNS = ("layer", "output → pooling", "D", "kNN val", "kNN test", "probe val", "probe test", "silhouette", "PCA 95%",
           "PR")


def collect(root: Path) -> list[dict]:
    """Every layer's analysis.json under ``root``, in layer order."""
    return [read_json(layer_folder(root, layer) / "analysis.json") for layer in stored_layers(root)
            if (layer_folder(root, layer) / "analysis.json").is_file()]


def write_report(root: Path) -> dict:
    """(Re)write analysis.md and analysis.json from all analysed layers; return the JSON dict."""
    summary = read_json(Path(root) / "embed.json")
    results, stale = [], []
    for result in collect(root):  # a layer extracted earlier from other weights or data is not comparable
        same_source = (result.get("weights_sha256"), result.get("manifest_hash")) == \
            (summary["weights_sha256"], summary["manifest_hash"])
        (results if same_source else stale).append(result)
    table = {"classifier_run": summary["classifier_run"], "weights": summary["weights"],
             "manifest_hash": summary["manifest_hash"], "head_accuracy": summary.get("head_accuracy", {}),
             "layers": results, "left_out": [result["layer"] for result in stale]}
    write_json(Path(root) / "analysis.json", table)
    atomic_write_text(Path(root) / "analysis.md", format_table(table) + "\n")
    return table


def format_table(table: dict) -> str:
    results = table["layers"]
    k = _shared(results, "knn_k")
    header = [column.replace("kNN", f"kNN@{k}" if k is not None else "kNN") for column in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for result in results:
        cells = [result["layer"], _output(result), str(result["dim"]),
                 _percent(result["knn"].get("val")), _percent(result["knn"].get("test")),
                 _percent(result["probe"].get("val")), _percent(result["probe"].get("test")),
                 _number(result["silhouette"], 3), str(result["pca_dims_95"]), _number(result["participation_ratio"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + _notes(table) + _near_duplicates(results))


def _near_duplicates(results: list[dict]) -> list[str]:
    """The deepest layer searched for near-duplicates (rows are in model order), or nothing."""
    searched = [result for result in results if result.get("near_duplicates")]
    return markdown_lines(searched[-1]["near_duplicates"], searched[-1]["layer"]) if searched else []


def _notes(table: dict) -> list[str]:
    results, head = table["layers"], table.get("head_accuracy", {})
    notes = []
    if head:
        notes.append(f"Classifier's own accuracy ({table['weights']} weights): "
                     + ", ".join(f"{split} {_percent(head[split])}" for split in SPLIT_NAMES if split in head) + ".")
    notes += ["kNN: cosine, bank = train split" + _setting(results, "knn_k", "k") + ". Probe: logistic regression "
              "on standardised features, fitted on train" + _setting(results, "probe_c", "C") + ".",
              "Silhouette (cosine) and PCA dims for 95 % variance / participation ratio (PR): on a train subsample"
              + _setting(results, "sample_points", "points") + ".",
              f"Classifier run: {table['classifier_run']} (manifest {table['manifest_hash'][:12]})."]
    if table.get("left_out"):
        notes.append(f"Left out (taken from other weights or data; re-run `visrep embed --overwrite`): "
                     f"{', '.join(table['left_out'])}.")
    unconverged = [result["layer"] for result in results if not result.get("probe_converged", True)]
    if unconverged:
        notes.append(f"Probe hit analysis.probe_max_iter before converging for: {', '.join(unconverged)}.")
    return notes


def _shared(results: list[dict], key: str):
    """The value of ``key`` when every layer was analysed with the same one, else None."""
    values = {result[key] for result in results}
    return values.pop() if len(values) == 1 else None


def _setting(results: list[dict], key: str, label: str) -> str:
    """" (C=1.0)" when shared; " (C: stem 1.0, penultimate 0.1)" when layers were analysed differently."""
    if not results:
        return ""
    shared = _shared(results, key)
    if shared is not None:
        return f" ({label}={shared})"
    return f" ({label}: " + ", ".join(f"{result['layer']} {result[key]}" for result in results) + ")"


def _output(result: dict) -> str:
    """"64×14×14 avg" — the layer's own output shape and how it was pooled into D."""
    raw = result.get("layer_output_shape") or result["shape"]
    pooled = len(raw) > 1 and result.get("pooling")
    return "×".join(map(str, raw)) + (f" {result['pooling']}" if pooled else "")


def _percent(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def _number(value, digits: int) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"
