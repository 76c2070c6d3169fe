"""benchmarks/RESULTS.md, the goals' detail pages and README's "Results at a glance" table are generated from
benchmarks/results/*.json (and the slow tests' list from tests/): each must be what the generator writes."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import glance  # noqa: E402
import slow_tests  # noqa: E402


def test_results_page_is_generated_from_the_json():
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "make_results.py"), "--check"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_results_at_a_glance_is_the_table_the_json_gives():
    readme = (REPO / "README.md").read_text()
    assert readme == glance.with_table(readme), "README's results at a glance: run python benchmarks/make_results.py"


def test_every_glance_row_names_the_json_it_reads():
    for line in glance.table()[2:]:
        sources = line.rsplit(" | ", 1)[1]
        assert ".json](benchmarks/results/" in sources, line  # a row typed in, not read, would have none


def test_the_slow_list_names_each_slow_test_with_its_reason(tmp_path):
    (tmp_path / "test_a.py").write_text(
        'import pytest\nWHY = "two launches"\n\n'
        '@pytest.mark.slow(reason="trains for a minute")\ndef test_long():\n    pass\n\n'
        '@pytest.mark.parametrize("n", [1, pytest.param(2, marks=pytest.mark.slow(reason=WHY))])\n'
        'def test_cases(n):\n    pass\n')
    assert slow_tests.slow_tests(tmp_path) == [
        {"test": f"{tmp_path.name}/test_a.py::test_long", "reason": "trains for a minute"},
        {"test": f"{tmp_path.name}/test_a.py::test_cases[2]", "reason": "two launches"}]


def test_a_slow_mark_without_its_reason_stops_the_list(tmp_path):
    (tmp_path / "test_b.py").write_text("import pytest\n\n@pytest.mark.slow\ndef test_long():\n    pass\n")
    with pytest.raises(SystemExit, match=r"test_b\.py:3: .*reason"):
        slow_tests.slow_tests(tmp_path)
