import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from journalban import __version__
from journalban.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_version_from_the_installed_entry_point() -> None:
    out = subprocess.run([sys.executable, "-m", "journalban", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"journalban, version {__version__}"


def test_check_accepts_the_embedded_default() -> None:
    result = CliRunner().invoke(main, ["check", "-c", str(ROOT / "packaging/journalban.toml")])
    assert result.exit_code == 0, result.output
    assert "jails: wplogin, nginx-wp-login" in result.output


def test_check_lists_each_error_as_file_line_column(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[defaults]\nbantime = "soon"\n\n[jails.web]\ngrammar = "nope"\nfiles = ["/x"]\n')
    result = CliRunner().invoke(main, ["check", "-c", str(config)])
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith(f"{config}:2:1: defaults.bantime: expected a duration")


def test_check_names_a_missing_grammar_where_the_jail_asks_for_it(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[jails.web]\nfiles = ["/x"]\ngrammar = "nope"\n')
    result = CliRunner().invoke(main, ["check", "-c", str(config)])
    assert result.exit_code == 1
    assert result.output.startswith(f"{config}:3:1: no grammar named 'nope'")


def test_check_reports_a_grammar_syntax_error_with_its_position(tmp_path: Path) -> None:
    grammars = tmp_path / "grammars"
    grammars.mkdir()
    (grammars / "broken.grammar").write_text(
        'grammar broken\napplies file format=raw\ntime read\nfail x: <address "oops"\n')
    config = tmp_path / "c.toml"
    config.write_text(f'[grammars]\ndirectories = ["{grammars}"]\n\n[jails.web]\nfiles = ["/x"]\ngrammar = "broken"\n')
    result = CliRunner().invoke(main, ["check", "-c", str(config)])
    assert result.exit_code == 1
    assert result.output.startswith(f"{grammars / 'broken.grammar'}:4:")


def test_db_upgrade_creates_the_ledger(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[ledger]\nurl = "sqlite:///{tmp_path}/l.db"\n')
    result = CliRunner().invoke(main, ["db", "upgrade", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "l.db").exists()


def test_grammar_test_runs_every_shipped_example() -> None:
    result = subprocess.run([sys.executable, "-m", "journalban", "grammar", "test", "-c",
                             str(ROOT / "packaging/journalban.toml")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\d+ examples, 0 failed in \d+ grammars", result.stdout)


def test_grammar_test_reports_a_failing_example(tmp_path: Path) -> None:
    grammar = tmp_path / "bad.grammar"
    grammar.write_text('grammar bad\napplies file format=raw\nfail x: "from " <address>\n'
                       'example "from 203.0.113.9" => x address=203.0.113.10\n')
    result = CliRunner().invoke(main, ["grammar", "test", str(grammar)])
    assert result.exit_code == 1
    assert f"{grammar}:4:" in result.output


def test_a_broken_grammar_no_jail_uses_is_only_a_warning(tmp_path: Path) -> None:
    grammars = tmp_path / "grammars"
    grammars.mkdir()
    (grammars / "unused.grammar").write_text("grammar unused\napplies nowhere\n")
    config = tmp_path / "c.toml"
    config.write_text(f'[grammars]\ndirectories = ["{grammars}"]\n\n'
                      '[jails.web]\nfiles = ["/x"]\ngrammar = "wp-limit-login"\n')
    result = CliRunner().invoke(main, ["check", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert f"warning: {grammars / 'unused.grammar'}:2:" in result.output


def test_import_fail2ban_writes_a_grammar_that_loads(tmp_path: Path) -> None:
    conf = tmp_path / "demo.conf"
    conf.write_text("[Definition]\nfailregex = ^Login failed for \\S+ from <HOST>$\nignoreregex =\n")
    out = tmp_path / "demo.grammar"
    result = CliRunner().invoke(main, ["grammar", "import-fail2ban", str(conf), "-o", str(out)])
    assert result.exit_code == 0, result.output
    check = CliRunner().invoke(main, ["replay", "-g", str(out), "-", "--json", "--maxretry", "1"],
                               input="Login failed for bob from 203.0.113.9\n")
    assert check.exit_code == 0, check.output
    assert '"banned_addresses": 1' in check.output
