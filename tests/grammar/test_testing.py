"""``run_grammar_tests``: what `journalban grammar test` prints and the exit code it returns."""

import io
from pathlib import Path

from journalban.grammar import run_grammar_tests

SHIPPED = Path(__file__).resolve().parents[2] / "grammars"
GOOD = (
    "grammar good\napplies file format=raw\n"
    'fail r: "from " <address>\n'
    'example "from 203.0.113.9" => r address=203.0.113.9\n'
    'example "from 8.8.8.8 x" => no match\n'
)
BAD = (
    "grammar bad\napplies file format=raw\n"
    'fail r: "from " <address>\n'
    'example "from 203.0.113.9" => r address=203.0.113.9\n'
    'example "from 203.0.113.9" => no match\n'
    'example "from 203.0.113.9" => r address=198.51.100.1\n'
)


def _run(targets: list[str], directories: list[Path]) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = run_grammar_tests(targets, directories, out)
    return code, out.getvalue().splitlines()


def _write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.grammar"
    path.write_text(text, encoding="utf-8")
    return path


def test_all_pass_by_name(tmp_path: Path) -> None:
    _write(tmp_path, "good", GOOD)
    _write(tmp_path, "bad", BAD)
    assert _run(["good"], [tmp_path]) == (0, ["2 examples, 0 failed in 1 grammar"])


def test_failures_point_at_the_example(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad", BAD)
    code, lines = _run([str(path)], [])
    assert code == 1
    assert lines == [
        f"{path}:5:1: example expected no match, got r address=203.0.113.9",
        f"{path}:6:1: example expected r address=198.51.100.1, got r address=203.0.113.9",
        "3 examples, 2 failed in 1 grammar",
    ]


def test_no_targets_runs_every_grammar_and_reports_load_errors(tmp_path: Path) -> None:
    _write(tmp_path, "good", GOOD)
    _write(tmp_path, "bad", BAD)
    broken = _write(tmp_path, "broken", "grammar broken\napplies file format=raw\nfail r: <nope>\n")
    code, lines = _run([], [tmp_path])
    assert code == 1
    assert lines[0] == f"{broken}:3:10: unknown placeholder type 'nope'; expected one of address, " + (
        "any, endpoint, hostname, int, quoted, word, stamp:FORMAT"
    )
    assert lines[-1] == "5 examples, 2 failed in 2 grammars; 1 grammar not loaded"


def test_unknown_name_and_broken_file_by_name(tmp_path: Path) -> None:
    broken = _write(tmp_path, "broken", "grammar broken\n")
    code, lines = _run(["nothing", "broken"], [tmp_path])
    assert code == 1
    assert lines == [
        f"nothing: no grammar named 'nothing' in {tmp_path}",
        f"{broken}:1:1: missing 'applies' statement",
        "0 examples, 0 failed in 0 grammars; 2 grammars not loaded",
    ]


def test_earlier_directory_wins(tmp_path: Path) -> None:
    _write(tmp_path / "local", "mine", BAD.replace("grammar bad", "grammar good"))
    _write(tmp_path / "shipped", "good", GOOD)
    code, lines = _run(["good"], [tmp_path / "local", tmp_path / "shipped"])
    assert code == 1 and lines[-1] == "3 examples, 2 failed in 1 grammar"


def test_shipped_grammars_all_pass() -> None:
    code, lines = _run([], [SHIPPED])
    assert code == 0, lines
    shipped = len(list(SHIPPED.glob("*.grammar")))
    assert lines[-1].endswith(f", 0 failed in {shipped} grammars")
