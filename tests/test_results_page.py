"""benchmarks/RESULTS.md is generated from benchmarks/results/*.json: it must be what the generator writes."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_results_page_is_generated_from_the_json():
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "make_results.py"), "--check"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
