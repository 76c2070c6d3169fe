"""Each malformed input → one `error:` line, exit code 2, no traceback, nothing saved changed."""

import os

import pytest

from malformed_cases import CASES, MUST_NAME, snapshot
from visrep.cli import main


@pytest.mark.parametrize("case", CASES, ids=[case.__name__ for case in CASES])
def test_malformed_input_is_one_clear_line(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VISREP_CACHE", str(tmp_path / "cache"))
    argv = case(tmp_path)
    capsys.readouterr()
    before = snapshot(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert MUST_NAME.get(case, "") in lines[0]
    assert "Traceback" not in err
    after = snapshot(tmp_path)
    assert {name: after.get(name) for name in before} == before  # nothing saved was changed or removed
    assert all(name.startswith("cache/") for name in set(after) - set(before))  # only decode-cache entries added
