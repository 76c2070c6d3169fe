"""Time `make test`'s pytest on this checkout and record it in benchmarks/results/test_suite.json.

    python benchmarks/time_test_suite.py --label "after issue 37 and 33 (part)" [--runs 1]

Runs the fast suite (pyproject's addopts: -m 'not slow', xdist workers) in a fresh clone of HEAD (so
that no untracked file or local cache takes part), with this checkout's virtual environment, and
appends one row per run to the goal's table: the wall seconds, the tests counted from pytest's
closing line, the commit. The headline, verdict (≤ 240 s) and date are recomputed from the newest
row; nothing is typed in. Run it on an otherwise idle machine: say so in the label if it was not.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_line  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "test_suite.json"
BUDGET_SECONDS = 240.0  # met: the fast suite passes within 4 minutes on a fresh clone


def suite_met(exit_code: int, seconds: float) -> bool:
    """Met when the run passed (pytest's exit code 0) in at most BUDGET_SECONDS."""
    return exit_code == 0 and seconds <= BUDGET_SECONDS


def time_once(clone: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(clone / "src")}  # the clone's code, not the editable install's
    started = time.perf_counter()
    # pyproject already gives -q: a second -q would drop the closing counts line
    result = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider"],
                            cwd=clone, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    closing = next((line for line in reversed(result.stdout.splitlines()) if " in " in line and "passed" in line), "")
    if result.returncode != 0:  # the suite must pass to count: show why it did not
        print(result.stdout[-4000:], result.stderr[-2000:], file=sys.stderr)
    counts = {name: int(number) for number, name in re.findall(r"(\d+) (passed|failed|skipped|deselected)", closing)}
    return {"seconds": round(seconds, 1), "exit_code": result.returncode, "closing": closing.strip("= "), **counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="what this measurement is (the table's suite column)")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    doc = json.loads(RESULTS.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        runs = [time_once(clone) for _ in range(args.runs)]
    table = doc["tables"][0]
    for row in table["rows"]:
        row.pop("_strong", None)
    for run in runs:
        table["rows"].append({"suite": f"{args.label} ({commit}), fresh clone", "host": "native", "workers": 2,
                              "seconds": run["seconds"], "_strong": True})
    newest = runs[-1]
    doc.update({"met": suite_met(newest["exit_code"], newest["seconds"]),
                "headline": f"{newest['seconds']} s with 2 xdist workers on a fresh clone ({newest['closing']}, "
                            f"{time.strftime('%Y-%m-%d')})",
                "date": time.strftime("%Y-%m-%d"), "commit": commit, "host": machine_line(),
                "command": "python benchmarks/time_test_suite.py --label LABEL"})
    RESULTS.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
