"""Shell completion (Typer's) for bash, zsh and fish: installed by each real shell, completing names.

Each shell runs `cozyops --install-completion` itself (Typer recognises the shell that runs it),
with HOME in the test's scratch directory, so the machine's own shell files are never touched.
bash and fish then complete for real from the installed script; zsh's completion system needs a
terminal (zle), so its installed script is checked by `zsh -n` and its protocol is asked the way
the script asks it.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def shell_env(home: Path) -> dict[str, str]:
    if not (BIN / "cozyops").exists():
        pytest.fail(f"no cozyops console script beside {sys.executable}")
    return {"HOME": str(home), "PATH": f"{BIN}:/usr/bin:/bin", "XDG_STATE_HOME": str(home / "state"),
            "XDG_CONFIG_HOME": str(home / ".config"), "LANG": "C.UTF-8"}


def need(shell: str) -> str:
    found = shutil.which(shell)
    if not found:
        pytest.fail(f"{shell} is not installed (./dev test installs it)")
    return found


def install(shell: str, home: Path) -> subprocess.CompletedProcess:
    # `; true`: the shell must stay the parent (a lone command is exec-ed in its place)
    result = subprocess.run([need(shell), "-c", "cozyops --install-completion; true"], env=shell_env(home),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{shell} completion installed in" in result.stdout
    return result


def test_bash_completes_groups_and_commands(tmp_path):
    install("bash", tmp_path)
    script = tmp_path / ".bash_completions" / "cozyops.sh"
    assert script.exists() and "source" in (tmp_path / ".bashrc").read_text()

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        probe = (f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
                 '_cozyops_completion cozyops; printf "%s\\n" "${COMPREPLY[@]}"')
        done = subprocess.run(["bash", "-c", probe], env=shell_env(tmp_path), capture_output=True, text=True,
                              timeout=60, check=True)
        return done.stdout.split()

    assert complete("cozyops", "ce") == ["cert"]
    assert set(complete("cozyops", "")) >= {"lab", "dns", "cert", "v2"}
    assert complete("cozyops", "cert", "re") == ["renew"]
    assert "--json" in complete("cozyops", "dns", "plan", "--j")


def test_fish_completes_groups_and_commands(tmp_path):
    install("fish", tmp_path)
    script = tmp_path / ".config" / "fish" / "completions" / "cozyops.fish"
    assert script.exists()

    def complete(line: str) -> list[str]:
        done = subprocess.run([need("fish"), "-c", f"source {script}; complete --do-complete '{line}'"],
                              env=shell_env(tmp_path), capture_output=True, text=True, timeout=60, check=True)
        return [row.split("\t")[0] for row in done.stdout.splitlines()]

    assert complete("cozyops ce") == ["cert"]
    assert complete("cozyops dns ap") == ["apply"]


def test_zsh_script_installs_parses_and_its_protocol_completes(tmp_path):
    install("zsh", tmp_path)
    script = tmp_path / ".zfunc" / "_cozyops"
    assert script.exists() and "fpath+=~/.zfunc" in (tmp_path / ".zshrc").read_text()
    subprocess.run([need("zsh"), "-n", str(script)], check=True, timeout=60)
    # What the installed function runs for `cozyops ce<TAB>`:
    assert "_TYPER_COMPLETE_ARGS" in script.read_text()
    env = {**shell_env(tmp_path), "_TYPER_COMPLETE_ARGS": "cozyops ce", "_COZYOPS_COMPLETE": "complete_zsh"}
    done = subprocess.run(["cozyops"], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert '"cert":' in done.stdout


def test_completion_does_not_take_the_help_shortcut(tmp_path):
    env = {**shell_env(tmp_path), "_TYPER_COMPLETE_ARGS": "cozyops cert ls --h", "_COZYOPS_COMPLETE": "complete_zsh"}
    done = subprocess.run(["cozyops", "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert not done.stdout.startswith("Usage:")
    assert '"--help":' in done.stdout  # the completion of `--h`, not the help text
