from pathlib import Path

from cozyops import paths


def test_xdg_directories(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "s"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    assert paths.state_dir() == tmp_path / "s" / "cozyops"
    assert paths.cache_dir() == tmp_path / "c" / "cozyops"
    assert paths.labs_dir() == tmp_path / "s" / "cozyops" / "labs"
    assert paths.log_file() == tmp_path / "s" / "cozyops" / "logs" / "cozyops.log"


def test_xdg_defaults_and_relative_values(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # invalid per the spec: ignored
    assert paths.state_dir() == tmp_path / ".local" / "state" / "cozyops"
    assert paths.cache_dir() == tmp_path / ".cache" / "cozyops"


def test_fleet_state_lives_in_the_fleet():
    assert paths.fleet_state_dir(Path("/f")) == Path("/f/.cozyops")


def test_data_directories_are_found():
    for name in ("playbooks", "templates", "inventories"):
        assert paths.data_dir(name).is_dir()
    assert (paths.data_dir("templates") / "lab" / "named.conf.j2").is_file()
