"""Run the malformed-input suite through the CLI and print how each case ended (Markdown table).

    python benchmarks/malformed_inputs.py
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from malformed_cases import CASES, snapshot  # noqa: E402

from visrep.cli import main  # noqa: E402


def run_case(case) -> tuple[int, str, bool]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["VISREP_CACHE"] = str(tmp / "cache")
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            argv = case(tmp)
        before = snapshot(tmp)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
        after = snapshot(tmp)
        unchanged = all(after.get(name) == data for name, data in before.items())
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        return code, " / ".join(lines), unchanged


def main_table() -> None:
    print("| # | case | exit code | message | saved files unchanged |")
    print("|---|---|---|---|---|")
    for number, case in enumerate(CASES, start=1):
        code, message, unchanged = run_case(case)
        message = re.sub(r"/tmp/tmp\w+", "$TMP", message.replace("|", "\\|"))
        print(f"| {number} | {case.__name__.replace('_', ' ')} | {code} | `{message[:160]}` | {'yes' if unchanged else 'NO'} |")


if __name__ == "__main__":
    main_table()
