"""Run the malformed-input suite through the CLI and write how each case ended (results JSON + table).

    python benchmarks/malformed_inputs.py --out benchmarks/results/malformed_inputs.json

The cases are tests/malformed_cases.py's (the same ones `make test` runs): error cases must end with
exit code 2, one `error:` line, no traceback and nothing saved before changed; warning cases (input
that is accepted but suspect) with exit code 0, their documented warning and nothing else changed.
Every figure and the verdict are computed here, from the runs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))
from common import machine_line, report_json  # noqa: E402
from malformed_cases import CASES, MUST_NAME, WARNING_CASES, snapshot  # noqa: E402
from verdicts import all_cases_pass  # noqa: E402

from visrep.cli import main  # noqa: E402

TARGET = ("every case: one clear line and exit code 2 (or, for accepted but suspect input, exit code 0 "
          "and its documented warning), no traceback, nothing already saved changed, nothing written "
          "outside the case's folder")


def run_case(case) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["VISREP_CACHE"] = str(tmp / "cache")
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            argv = case(tmp)
        before = snapshot(tmp)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(argv)
        after = snapshot(tmp)
    return {"code": code, "out": out.getvalue(), "err": err.getvalue(), "before": before, "after": after}


def error_row(case, result: dict) -> dict:
    lines = [line for line in result["err"].splitlines() if line.strip()]
    unchanged = all(result["after"].get(name) == data for name, data in result["before"].items())
    added = [name for name in set(result["after"]) - set(result["before"]) if not name.startswith("cache/")]
    one_line = len(lines) == 1 and lines[0].startswith("error: ") and MUST_NAME.get(case, "") in lines[0]
    passed = result["code"] == 2 and one_line and "Traceback" not in result["err"] and unchanged and not added
    return {"case": case.__name__.replace("_", " "), "kind": "error", "exit_code": result["code"],
            "message": _shown(" / ".join(lines)), "saved_files_unchanged": "yes" if unchanged and not added else "NO",
            "pass": "yes" if passed else "NO"}


def warning_row(case, result: dict) -> dict:
    must, must_not, may_change = WARNING_CASES[case]
    said = result["err"] + result["out"]  # the console warning first, the report's copy after
    kept = {name: data for name, data in result["before"].items() if not (may_change and name.startswith(may_change))}
    unchanged = all(result["after"].get(name) == data for name, data in kept.items())
    line = next((line for line in said.splitlines() if must in line), "")
    passed = result["code"] == 0 and bool(line) and must_not not in said and "Traceback" not in said and unchanged
    return {"case": case.__name__.replace("_", " "), "kind": "warning", "exit_code": result["code"],
            "message": _shown(line.strip()), "saved_files_unchanged": "yes" if unchanged else "NO",
            "pass": "yes" if passed else "NO"}


def _shown(message: str) -> str:
    return re.sub(r"/tmp/tmp\w+", "$TMP", message)[:200]


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=5).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def results(rows: list[dict], seconds: float) -> dict:
    passed = sum(row["pass"] == "yes" for row in rows)
    errors = sum(row["kind"] == "error" for row in rows)
    columns = [{"key": "case_no", "label": "#"}, {"key": "case", "label": "case"}, {"key": "kind", "label": "kind"},
               {"key": "exit_code", "label": "exit code"}, {"key": "message", "label": "message", "code": True},
               {"key": "saved_files_unchanged", "label": "saved files unchanged"}, {"key": "pass", "label": "pass"}]
    return {"goal": "Malformed-input suite", "issue": 37, "order": 80, "target": TARGET, "met": all_cases_pass(rows),
            "headline": f"{passed} of {len(rows)} cases pass ({errors} errors, {len(rows) - errors} warnings)",
            "host": machine_line(), "date": time.strftime("%Y-%m-%d"), "commit": _commit(),
            "command": "python benchmarks/malformed_inputs.py --out benchmarks/results/malformed_inputs.json",
            "seeds": None, "seconds": round(seconds, 1),
            "setup": ("The cases of tests/malformed_cases.py (also run by tests/test_malformed_inputs.py in `make "
                      "test`), each in a fresh temporary folder, through the CLI entry point. The message column "
                      "is cut at 200 characters; $TMP is the case's temporary folder. Cases from issue 37 (the "
                      "generator verbs and the pipeline) follow the first 44."),
            "tables": [{"title": "Cases", "columns": columns,
                        "rows": [{"case_no": number, **row} for number, row in enumerate(rows, start=1)]}],
            "history": ["notes/2026-11-28-first-benchmarks.md"], "notes": []}


def main_run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results JSON here")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = [error_row(case, run_case(case)) for case in CASES]
    rows += [warning_row(case, run_case(case)) for case in WARNING_CASES]
    report_json(results(rows, time.perf_counter() - started), args.out)


if __name__ == "__main__":
    main_run()
