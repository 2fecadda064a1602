"""`--help` from pre-rendered text: the same as Typer's, and without importing Typer or a group."""

import json
import subprocess
import sys

import pytest

from cozyops.cli import helptext


def test_the_committed_help_is_what_the_commands_render():
    """Fails when a command's help changed without `python -m cozyops.cli.helptext` being run."""
    committed = json.loads(helptext._FILE.read_text(encoding="utf-8"))
    rendered = helptext.render()
    assert sorted(committed) == sorted(rendered), "run: python -m cozyops.cli.helptext"
    for path, text in rendered.items():
        assert committed[path] == text, f"help of `cozyops {path}` is stale: run python -m cozyops.cli.helptext"


def test_every_group_and_command_has_its_help():
    texts = helptext._texts()
    for path in ("", "lab", "dns", "cert", "v2", "cert ls", "dns plan", "lab up", "v2 import"):
        assert texts[path].startswith("Usage: cozyops " + (f"{path} " if path else "[OPTIONS]"))


@pytest.mark.parametrize("args, path", [
    (["--help"], ""),
    (["-h"], ""),
    (["--debug", "--help"], ""),
    (["cert", "--help"], "cert"),
    (["cert", "ls", "--help"], "cert ls"),
    (["cert", "ls", "--fleet", "somewhere", "--help"], "cert ls"),
    (["cert", "ls", "alice.cozy.test", "-h"], None),  # an argument before the flag: Typer decides
    (["cert", "nope", "--help"], None),
    (["lab", "exec", "--", "ls", "--help"], None),
    (["cert", "ls"], None),
    ([], None),
])
def test_lookup_answers_only_help_it_holds(args, path):
    found = helptext.lookup(args)
    assert found == (None if path is None else helptext._texts()[path])


@pytest.mark.parametrize("argv", [["--help"], ["cert", "--help"], ["cert", "ls", "--help"], ["dns", "plan", "-h"]])
def test_help_imports_neither_typer_nor_any_group(argv):
    probe = ("import sys\nfrom cozyops import cli\ntry:\n    cli.main(sys.argv[1:])\nexcept SystemExit as e:\n"
             "    code = e.code\n"
             "loaded = [m for m in sys.modules if m.split('.')[0] in ('typer', 'rich', 'yaml', 'dns', 'acme')"
             " or m.startswith('cozyops.cli.') and m != 'cozyops.cli.helptext']\n"
             "print(code, loaded, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("Usage: cozyops ")
    assert result.stderr.strip() == "0 []"


def test_an_unknown_command_still_gets_typers_usage_error(capsys):
    from cozyops import cli

    with pytest.raises(SystemExit) as done:
        cli.main(["cert", "nope", "--help"])
    assert done.value.code == 2
    assert "No such command 'nope'" in capsys.readouterr().err
