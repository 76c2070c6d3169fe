"""README's "Results at a glance" table, written from benchmarks/results/*.json (standard library only).

make_results.py puts the table between README's two marker lines, and `make_results.py --check` (run by
tests/test_results_page.py) fails when README's copy differs, so the table cannot drift from the JSON.
Each row is one short function that reads its figures from named rows of named goal files; the files
it read become the row's "from" column. Figures are rounded to 3 significant digits unless a row says
otherwise (the JSON keeps them as measured).
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal, localcontext
from functools import cache
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
START = ("<!-- results-at-a-glance:start: written by `python benchmarks/make_results.py` from "
         "benchmarks/results/*.json; edit the JSON and rerun, not this table -->")
END = "<!-- results-at-a-glance:end -->"


@cache
def _doc(name: str) -> dict:
    return json.loads((RESULTS / name).read_text(), parse_float=Decimal)


class Figures:
    """Reads rows of goal files' tables and remembers which files a glance row took its figures from."""

    def __init__(self):
        self.names: list[str] = []

    def rows(self, name: str, table: int = 0, **where) -> list[dict]:
        """The rows of ``name``'s table ``table`` whose columns equal ``where``."""
        if name not in self.names:
            self.names.append(name)
        found = [row for row in _doc(name)["tables"][table]["rows"]
                 if all(row.get(key) == value for key, value in where.items())]
        if not found:
            raise SystemExit(f"README's results at a glance: {name} table {table} has no row with {where}")
        return found

    def row(self, name: str, table: int = 0, **where) -> dict:
        found = self.rows(name, table, **where)
        if len(found) > 1:
            raise SystemExit(f"README's results at a glance: {name} table {table} has {len(found)} rows with {where}")
        return found[0]


def _format(value, spec: str) -> str:
    with localcontext() as context:
        context.rounding = ROUND_HALF_UP  # 0.9965 → 0.997, as a reader rounds
        return format(value, spec)


def sig(value) -> str:
    """Three significant digits."""
    return _format(value, ".3g")


def fixed(value, places: int = 0) -> str:
    return _format(value, f".{places}f")


def mean_std(value: dict, places: int, unit: str = "", scale: int = 1) -> str:
    """{"mean", "std"} as "mean<unit> ± std"; ``scale`` turns a fraction into a percentage."""
    return f"{fixed(value['mean'] * scale, places)}{unit} ± {fixed(value['std'] * scale, places)}"


def minutes(seconds) -> str:
    return fixed(seconds / 60)


def spread(values: list) -> str:
    low, high = min(values), max(values)
    return sig(low) if low == high else f"{sig(low)}–{sig(high)}"


# ---- the rows, in the order README shows them ---------------------------------------------------

def demo(f: Figures) -> tuple[str, str]:
    demo_s = f.row("demo_pipeline.json", 0, what="make demo (the whole pipeline)")["seconds"]
    install_s = f.row("demo_pipeline.json", 0,
                      what="make install (creates .venv from the local wheel cache)")["seconds"]
    gan = f.row("demo_pipeline.json", 2, generator="GAN (class)", metric="GAN-test")
    diffusion = f.row("demo_pipeline.json", 2, generator="diffusion (embedding)", metric="GAN-test")
    return ("`make demo` (whole pipeline, digits)",
            f"{fixed(demo_s)} s on a fresh clone after a {fixed(install_s)} s install; report with GAN-test "
            f"{sig(gan['model'])} (GAN) and {sig(diffusion['model'])} (diffusion) against a floor of "
            f"{sig(gan['floor'])}")


def classifiers(f: Figures) -> tuple[str, str]:
    mnist = f.row("classifier_mnist.json", 0, seed="mean ± std")
    cifar = f.row("classifier_cifar10.json", 0, recipe="visrep", seed="mean ± std")
    work = f.row("classifier_cifar10.json", 1, recipe="ratio visrep / anchor",
                 phase="predicted (the goal's measure)")["predicted_train_seconds"]["value"]
    return ("classifier, MNIST / CIFAR-10",
            f"{mean_std(mnist['test_acc'], 2, ' %')} in {fixed(mnist['train_seconds']['mean'])} s / "
            f"{mean_std(cifar['test_acc_tta_flip_translate'], 2, ' %')} (flip + translate TTA) at {work}× "
            "airbench94's work")


def evaluators(f: Figures) -> tuple[str, str]:
    cifar = f.row("evaluator_strong.json", 0, seed="mean ± std")
    mnist = f.row("evaluator_strong.json", 2, seed="mean ± std")
    seeds = len(f.rows("evaluator_strong.json", 0)) - 1  # every seed's row, then the mean ± std
    return ("independent evaluator, CIFAR-10 / MNIST",
            f"{mean_std(cifar['test'], 2, ' %', 100)} in {minutes(cifar['wall']['mean'])} min / "
            f"{mean_std(mnist['test'], 2, ' %', 100)} in {fixed(mnist['wall']['mean'])} s ({seeds} seeds)")


def _beside_floor(f: Figures, file: str, model: str, label: str, recall: bool, real_gan_test: bool = False
                  ) -> tuple[str, str]:
    """A generator's row: GAN-test and FID beside the real-vs-real floor's, then recall and coverage."""
    ours, floor = f.row(file, model=model), f.row(file, model="real-vs-real floor")
    on_real = f" (evaluator on real: {sig(floor['gan_test'])})" if real_gan_test else ""
    spread = f"recall {sig(ours['recall'])}, " if recall else ""
    return (f"{label}, {minutes(ours['train_seconds'])} min" + (" (first, untuned)" if real_gan_test else ""),
            f"GAN-test {sig(ours['gan_test'])}{on_real}, FID {sig(ours['fid'])} (floor {sig(floor['fid'])}), "
            f"{spread}coverage {sig(ours['coverage'])}")


def gan_mnist(f: Figures) -> tuple[str, str]:
    return _beside_floor(f, "gan_mnist.json", "ours", "GAN, MNIST", recall=False)


def diffusion_mnist(f: Figures) -> tuple[str, str]:
    return _beside_floor(f, "diffusion_mnist.json", "ours", "diffusion, MNIST", recall=True)


def diffusion_cifar10(f: Figures) -> tuple[str, str]:
    return _beside_floor(f, "diffusion_cifar10.json", "diffusion, class (60 min)", "diffusion, CIFAR-10", recall=True,
                         real_gan_test=True)


def gan_cifar10(f: Figures) -> tuple[str, str]:
    ours = f.row("gan_cifar10.json", model="GAN, class (18 min)")
    return (f"GAN, CIFAR-10, {minutes(ours['train_seconds'])} min (first, untuned)",
            f"GAN-test {sig(ours['gan_test'])} but recall {sig(ours['recall'])}: class prototypes, little variety "
            f"(FID {sig(ours['fid'])})")


def ddp(f: Figures) -> tuple[str, str]:
    processes = f.rows("ddp_scaling.json", layout="2 processes × 1 thread")
    threads = [r["speedup"] for r in f.rows("ddp_scaling.json", layout="1 process × 2 threads")]
    loops = ", ".join(r["loop"] for r in processes)
    return ("torchrun + DDP, 1 → 2 processes",
            f"{spread([r['speedup'] for r in processes])}× training images/s ({loops} loops; "
            f"2 threads in 1 process: {spread(threads)}×)")


ROWS = (demo, classifiers, evaluators, gan_mnist, diffusion_mnist, diffusion_cifar10, gan_cifar10, ddp)


def table() -> list[str]:
    lines = ["| what | result (2-core CPU) | from |", "|---|---|---|"]
    for make_row in ROWS:
        figures = Figures()
        what, result = make_row(figures)
        sources = ", ".join(f"[{name}](benchmarks/results/{name})" for name in figures.names)
        lines.append(f"| {what} | {result} | {sources} |")
    return lines


def with_table(readme: str) -> str:
    """README's text with the lines between the markers replaced by the table the JSON gives."""
    lines = readme.splitlines()
    if lines.count(START) != 1 or lines.count(END) != 1 or lines.index(START) > lines.index(END):
        raise SystemExit(f"README.md needs one line {START!r} and after it one line {END!r}")
    start, end = lines.index(START), lines.index(END)
    # blank lines around the table: the marker comments stay HTML blocks of their own when rendered
    return "\n".join([*lines[:start + 1], "", *table(), "", *lines[end:]]) + "\n"
