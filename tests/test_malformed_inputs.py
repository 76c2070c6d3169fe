"""Each malformed input → one `error:` line, exit code 2, no traceback, nothing saved changed; each
input that is accepted but suspect → exit 0 and the documented warning, nothing saved changed."""

import pytest

from malformed_cases import CASES, MUST_NAME, WARNING_CASES, snapshot
from visrep.cli import main


def _run(case, tmp_path, capsys, monkeypatch) -> tuple[int, str, str, dict, dict]:
    monkeypatch.setenv("VISREP_CACHE", str(tmp_path / "cache"))
    argv = case(tmp_path)
    capsys.readouterr()
    before = snapshot(tmp_path)
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err, before, snapshot(tmp_path)


@pytest.mark.parametrize("case", CASES, ids=[case.__name__ for case in CASES])
def test_malformed_input_is_one_clear_line(case, tmp_path, capsys, monkeypatch):
    code, _, err, before, after = _run(case, tmp_path, capsys, monkeypatch)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert MUST_NAME.get(case, "") in lines[0]
    assert "Traceback" not in err
    assert {name: after.get(name) for name in before} == before  # nothing saved was changed or removed
    assert all(name.startswith("cache/") for name in set(after) - set(before))  # only decode-cache entries added


@pytest.mark.parametrize("case", list(WARNING_CASES), ids=[case.__name__ for case in WARNING_CASES])
def test_suspect_input_is_accepted_with_its_warning(case, tmp_path, capsys, monkeypatch):
    must, must_not, may_change = WARNING_CASES[case]
    code, out, err, before, after = _run(case, tmp_path, capsys, monkeypatch)
    said = out + err
    assert code == 0, err
    assert must in said and must_not not in said and "Traceback" not in err, said[-3000:]
    kept = {name: data for name, data in before.items() if not (may_change and name.startswith(may_change))}
    assert {name: after.get(name) for name in kept} == kept  # nothing else saved was changed or removed
