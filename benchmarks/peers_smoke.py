"""The peer comparison end to end on the embedded digits, in minutes: a check of the harness, not a result.

    make bench-peers          # installs the bench extra (--no-deps), then runs this
    python benchmarks/peers_smoke.py [--seconds 60] [--n 300] [--threads 2]

In a temporary folder: the digits classifier and the independent evaluator (their shipped recipes),
then our diffusion model (configs/diffusion_digits.yaml, class-conditional, --seconds of training),
the diffusers peer (baseline_diffusers.py) and, when installed, denoising-diffusion-pytorch
(baseline_ddpm.py), each for the same --seconds on the same threads and precision; every sample set
scored by the same evaluator at the same N (`visrep evaluate generated`, CAS off). Prints one row per
model; the figures mean little at this budget, what is checked is that every step of the harness runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

from bench_gan import VISREP, flat_metrics, run_logged
from common import REPO

COLUMNS = ("gan_test", "fid", "kid", "precision", "recall", "coverage")


def trained(root: Path, args) -> dict[str, Path]:
    """Every generator's output folder, trained for ``args.seconds`` each."""
    configs, threads = REPO / "configs", f"train.threads={args.threads}"
    run_logged([*VISREP, "train", "classifier", "digits", "--config", str(configs / "digits.yaml"), "--name", "clf",
                f"run.root={root}", threads], root / "clf.log", root / "clf" / "metrics.json")
    run_logged([*VISREP, "train", "evaluator", "digits", "--conditioning", str(root / "clf"), "--name", "evaluator",
                f"run.root={root}", threads], root / "evaluator.log", root / "evaluator" / "evaluator.json")
    run_logged([*VISREP, "train", "diffusion", "--config", str(configs / "diffusion_digits.yaml"), "--name", "ours",
                f"run.root={root}", f"diffusion.conditioning_run={root / 'clf'}", "diffusion.conditioning=class",
                f"train.max_minutes={args.seconds / 60}", f"diffusion.final_samples={args.n}", threads],
               root / "ours.log", root / "ours" / "metrics.json")
    outputs = {"ours (visrep diffusion)": root / "ours"}
    peers = {"diffusers": "baseline_diffusers.py"}
    if importlib.util.find_spec("denoising_diffusion_pytorch") is not None:
        peers["denoising-diffusion-pytorch"] = "baseline_ddpm.py"
    for name, script in peers.items():
        out = root / name
        run_logged([sys.executable, str(REPO / "benchmarks" / script), "--data", "digits", "--config",
                    str(configs / "digits.yaml"), "--seconds", str(args.seconds), "--n", str(args.n),
                    "--threads", str(args.threads), "--out", str(out)], root / f"{name}.log", out / "samples.npz")
        outputs[name] = out
    return outputs


def scored(root: Path, name: str, fake: Path, n: int) -> dict:
    folder = f"score-{name.split()[0]}"
    run_logged([*VISREP, "evaluate", "generated", "--evaluator", str(root / "evaluator"), "--fake", str(fake),
                "-n", str(n), "--no-cas", "--name", folder, f"run.root={root}"], root / f"{folder}.log",
               root / folder / "metrics.json")
    return flat_metrics(json.loads((root / folder / "metrics.json").read_text())["model"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="training time of each generator")
    parser.add_argument("--n", type=int, default=300, help="samples per generator (and real test images)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        outputs = trained(root, args)
        print(f"{'model':32s} " + " ".join(f"{column:>9s}" for column in COLUMNS))
        for name, folder in outputs.items():
            figures = scored(root, name, folder, args.n)
            print(f"{name:32s} " + " ".join(f"{figures.get(column) or float('nan'):9.3f}" for column in COLUMNS))
    print(f"harness ran end to end: {len(outputs)} generators trained {args.seconds:g} s each and scored at "
          f"N = {args.n} by one evaluator")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
