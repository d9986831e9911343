"""The shipped shell completion scripts, run in real bash and zsh against the installed program."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPLETION = ROOT / "packaging/completion"
BASH_SCRIPT = COMPLETION / "journalban.bash"
ZSH_SCRIPT = COMPLETION / "_journalban"
BIN = Path(sys.executable).parent  # the venv's journalban entry point, which the scripts call back into


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("_JOURNALBAN_COMPLETE")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """Jails the embedded default does not have, so a hit proves -c was read."""
    path = tmp_path / "completion.toml"
    path.write_text('[jails.wpsite]\ngrammar = "sshd"\nfiles = ["/x"]\n\n'
                    '[jails.wpold]\ngrammar = "sshd"\nfiles = ["/x"]\nenabled = false\n\n'
                    '[jails.sshd]\ngrammar = "sshd"\nfiles = ["/x"]\n')
    return path


@pytest.mark.parametrize(("shell", "script"), [("bash", BASH_SCRIPT), ("zsh", ZSH_SCRIPT)])
def test_the_shipped_scripts_are_what_click_generates(shell: str, script: Path) -> None:
    out = subprocess.run([str(BIN / "journalban")], env=_env(_JOURNALBAN_COMPLETE=f"{shell}_source"),
                         capture_output=True, text=True, check=True)
    assert script.read_text() == out.stdout, (
        f"regenerate: _JOURNALBAN_COMPLETE={shell}_source journalban > {script.relative_to(ROOT)}")


def _bash_complete(*words: str, env: dict[str, str] | None = None) -> list[str]:
    """COMPREPLY of the shipped bash function for the command line WORDS (the last one being completed)."""
    driver = (f'source "$SCRIPT" && complete -p journalban >/dev/null && '
              f'COMP_WORDS=({" ".join(words)}) && COMP_CWORD={len(words) - 1} && '
              '_journalban_completion journalban && printf "%s\\n" "${COMPREPLY[@]}"')
    out = subprocess.run(["bash", "--norc", "--noprofile", "-c", driver],
                         env=_env(SCRIPT=str(BASH_SCRIPT), **(env or {})), capture_output=True, text=True, check=True)
    assert out.stderr == ""
    return out.stdout.split()


def test_bash_completes_a_command() -> None:
    assert _bash_complete("journalban", "li") == ["list"]
    assert {"ban", "unban", "status", "replay", "db"} <= set(_bash_complete("journalban", "''"))


def test_bash_completes_options() -> None:
    assert {"--jail", "--json", "--host", "--config"} <= set(_bash_complete("journalban", "list", "--"))


def test_bash_completes_jail_names_from_the_config(config: Path) -> None:
    assert _bash_complete("journalban", "list", "-c", '"$CONFIG"', "--jail", "wp",
                          env={"CONFIG": str(config)}) == ["wpsite"]  # wpold is disabled


def test_the_zsh_script_parses() -> None:
    zsh = _zsh()
    subprocess.run([zsh, "-n", str(ZSH_SCRIPT)], check=True)


def test_click_answers_the_zsh_protocol() -> None:
    out = subprocess.run([str(BIN / "journalban")], capture_output=True, text=True, check=True,
                         env=_env(_JOURNALBAN_COMPLETE="zsh_complete", COMP_WORDS="journalban li", COMP_CWORD="1"))
    assert out.stdout.splitlines()[:2] == ["plain", "list"]


# compsys's builtins only work inside a completion widget; these stand-ins print what the script offers.
ZSH_STUBS = r'''
_describe() { local name=$3; print -rl -- "${(@P)name}" }
compadd() { local name=${@[-1]}; print -rl -- "${(@P)name}" }
_path_files() { print -r -- "_path_files $*" }
compdef() { print -r -- "compdef $*" }
'''


def _zsh() -> str:
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh is not installed (scripts/install --test installs it)")
    return zsh


def _zsh_complete(*words: str, env: dict[str, str] | None = None) -> list[str]:
    """What the shipped _journalban, autoloaded from fpath as zsh does, offers for WORDS."""
    driver = (ZSH_STUBS + 'fpath=("$COMPLETION_DIR" $fpath); autoload -Uz _journalban; '
              f'words=({" ".join(words)}); CURRENT={len(words)}; _journalban')
    out = subprocess.run([_zsh(), "-f", "-c", driver], env=_env(COMPLETION_DIR=str(COMPLETION), **(env or {})),
                         capture_output=True, text=True, check=True)
    assert out.stderr == ""
    return out.stdout.splitlines()


def test_zsh_completes_a_command_with_its_help() -> None:
    offered = _zsh_complete("journalban", "li")
    assert len(offered) == 1 and offered[0].startswith("list:The bans in force")


def test_zsh_completes_jail_names_from_the_config(config: Path) -> None:
    assert _zsh_complete("journalban", "list", "-c", '"$CONFIG"', "--jail", "''",
                         env={"CONFIG": str(config)}) == ["wpsite", "sshd"]


def test_sourcing_the_zsh_script_registers_it() -> None:
    out = subprocess.run([_zsh(), "-f", "-c", ZSH_STUBS + 'source "$SCRIPT"'], env=_env(SCRIPT=str(ZSH_SCRIPT)),
                         capture_output=True, text=True, check=True)
    assert out.stdout == "compdef _journalban_completion journalban\n"
