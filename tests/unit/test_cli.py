"""The command line's contract: help, version, exit codes, one-line errors, JSON on stdout only."""

import json
import logging

import pytest

from cozyops import __version__, cli, paths
from cozyops.cli.app import GROUPS
from cozyops.errors import ConfigError, UnsafePlanError
from cozyops.lab.lab import Lab
from tests.conftest import new_lab_id


def run(capsys, *argv):
    with pytest.raises(SystemExit) as done:
        cli.main(list(argv))
    out, err = capsys.readouterr()
    return done.value.code, out, err


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert (code, out) == (0, f"cozyops {__version__}\n")


def test_help_explains_and_lists_lab(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "Cozy" in out and "lab" in out and "--debug" in out


def test_no_command_shows_help(capsys):
    code, out, err = run(capsys)
    assert code in (0, 2)
    assert "Usage" in out + err


def test_usage_error_exits_2_without_traceback(capsys):
    code, _, err = run(capsys, "lab", "up", "--no-such-option")
    assert code == 2
    assert "Traceback" not in err


def test_known_error_is_one_line_naming_the_object(capsys):
    code, out, err = run(capsys, "lab", "status", "--id", "Not_Valid")
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("cozyops: error: lab id 'Not_Valid': ")


def test_unsafe_plan_exits_2(capsys, monkeypatch):
    def refuse(*_, **__):
        raise UnsafePlanError("plan for fleet lab", "deletes 12 of 20 records", "use --force")

    monkeypatch.setattr(Lab, "open", refuse)
    code, _, err = run(capsys, "lab", "status")
    assert code == 2
    assert err.strip() == "cozyops: error: plan for fleet lab: deletes 12 of 20 records (use --force)"


def test_unexpected_error_says_where_the_traceback_is(capsys, monkeypatch):
    def crash(*_, **__):
        raise RuntimeError("boom")

    monkeypatch.setattr(Lab, "open", crash)
    code, _, err = run(capsys, "lab", "status")
    assert code == 1
    assert "unexpected error: RuntimeError: boom" in err
    assert str(paths.log_file()) in err
    assert "Traceback" not in err
    logging.getLogger("cozyops").handlers[0].flush()
    assert "Traceback" in paths.log_file().read_text()


def test_debug_shows_the_traceback(capsys, monkeypatch):
    def crash(*_, **__):
        raise ConfigError("x", "y")

    monkeypatch.setattr(Lab, "open", crash)
    code, _, err = run(capsys, "--debug", "lab", "status")
    assert code == 1
    assert "Traceback" in err and "cozyops: error: x: y" in err


def test_json_output_is_only_json(capsys, tmp_path):
    # A lab that was never brought up: the status is still a report, in JSON on stdout. Its own id,
    # so that a user's lab up on the machine (the default id) does not answer instead.
    code, out, _ = run(capsys, "lab", "status", "--id", new_lab_id("never"), "--dir", str(tmp_path / "never"),
                       "--json")
    report = json.loads(out)
    assert code == 1
    assert report["up"] is False and report["ok"] is False
    for key in ("id", "dir", "zone", "zones", "dns", "acme", "hosts", "fleet", "ssh_config", "namespaces", "pids"):
        assert key in report
    assert report["dns"]["servers"][0]["reason"] == "lab is down"


def test_env_prints_shell_exports(capsys, tmp_path):
    code, out, _ = run(capsys, "lab", "env", "--id", "demo", "--dir", str(tmp_path / "with space"))
    assert code == 0
    assert f"export COZYOPS_LAB_DIR='{tmp_path / 'with space'}'" in out.splitlines()
    assert "export COZYOPS_LAB_ID=demo" in out.splitlines()
    assert all(line.startswith("export COZYOPS_") for line in out.splitlines())


@pytest.mark.parametrize("argv", [["lab", "up"], ["lab", "down"], ["lab", "exec", "--", "true"]])
def test_root_is_required_and_said_clearly(capsys, monkeypatch, tmp_path, argv):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    code, _, err = run(capsys, *argv[:2], "--dir", str(tmp_path / "lab"), *argv[2:])
    assert code == 1
    assert "needs root" in err and "sudo" in err


def test_missing_packages_are_named_with_the_setup_command(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("cozyops.lab.setup.which", lambda program: None if program in ("knotd", "pebble") else "/bin/x")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    code, _, err = run(capsys, "lab", "up", "--dir", str(tmp_path / "lab"))
    assert code == 1
    assert "missing Debian packages knot, pebble" in err
    assert "cozyops lab setup" in err


def test_a_command_imports_only_its_own_group(tmp_path):
    """`cozyops cert ...` loads the cert group alone: no paramiko, jinja2, v2 converters, and no
    rich when it writes plain lines to a pipe (each costs start-up time on every run)."""
    import subprocess
    import sys

    probe = ("import sys\nfrom cozyops import cli\ntry:\n    cli.main(['cert', 'ls', '--fleet', sys.argv[1]])\n"
             "except SystemExit:\n    pass\n"
             "print(' '.join(m for m in ('paramiko', 'jinja2', 'icalendar', 'vobject', 'rich', 'pydantic',"
             " 'cozyops.cli.lab', 'cozyops.cli.v2', 'cozyops.cli.dns', 'cozyops.cli.cert') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "no-fleet")], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "XDG_STATE_HOME": str(tmp_path / "state")}, check=True)
    assert result.stdout.split() == ["cozyops.cli.cert"], result.stderr
    assert result.stderr.startswith("cozyops: error: ") and "no-fleet" in result.stderr


def test_help_lists_every_group_in_order(capsys):
    code, out, _ = run(capsys, "--help")
    commands = out.split("Commands:")[1].split()
    assert code == 0 and [word for word in commands if word in GROUPS] == list(GROUPS)


def test_plain_progress_is_silent_for_short_work_and_periodic_for_long(capsys, monkeypatch):
    from cozyops.cli import render

    clock = iter([0.0, 1.0, 2.0])
    monkeypatch.setattr(render.time, "monotonic", lambda: next(clock))
    short = render.PlainProgress("certificates", every=5)
    short("issue", 1, 2)
    short("issue", 2, 2)
    assert capsys.readouterr().err == ""

    clock = iter([0.0, 6.0, 6.0, 7.0, 8.0, 8.0])
    monkeypatch.setattr(render.time, "monotonic", lambda: next(clock))
    long = render.PlainProgress("certificates", every=5)
    long("issue", 1, 3)
    long("issue", 2, 3)
    long("issue", 3, 3)
    assert capsys.readouterr().err.splitlines() == ["certificates: 1/3 (6.0 s)", "certificates: 3/3 (8.0 s)"]
