from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from grader.config import Config, hidden_secret, load_config
from grader.errors import ConfigError, CourseNotFoundError


def course_at(folder: Path, table: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(f"[tool.grader]\n{table}\n", encoding="utf-8")
    return folder


def test_settings_come_from_the_named_course(tmp_path: Path) -> None:
    config = load_config(course_at(tmp_path, 'cell_timeout = 5\ndevice = "cpu"'))
    assert config.root == tmp_path.resolve()
    assert (config.cell_timeout, config.device) == (5, "cpu")


def test_overrides_win_and_none_is_ignored(tmp_path: Path) -> None:
    config = load_config(course_at(tmp_path, "cell_timeout = 5"), cell_timeout=9.0, device=None)
    assert config.cell_timeout == 9.0 and config.device == "auto"


def test_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'cell_timout'"):
        load_config(course_at(tmp_path, "cell_timout = 5"))


def test_wrong_type_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cell_timeout must be a float"):
        load_config(course_at(tmp_path, 'cell_timeout = "slow"'))


def test_hidden_seed_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADER_HIDDEN_SEED", "99")
    assert load_config(course_at(tmp_path)).hidden_seed == 99
    for wrong in ("abc", "", "-5", "1.5"):
        monkeypatch.setenv("GRADER_HIDDEN_SEED", wrong)
        with pytest.raises(ConfigError, match="GRADER_HIDDEN_SEED must be a non-negative") as err:
            load_config(tmp_path)
        assert "abc" not in str(err.value), "a mistyped secret is not printed"


def test_a_negative_hidden_seed_in_the_course_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="hidden_seed must be a non-negative integer"):
        load_config(course_at(tmp_path, "hidden_seed = -3"))


def test_the_hidden_secret_has_no_published_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRADER_HIDDEN_SEED")
    assert Config().hidden_seed is None
    config = load_config(course_at(tmp_path / "course"))
    assert config.hidden_seed is None
    secret = hidden_secret(config)
    path = tmp_path / "course" / ".grader-secret" / "hidden_seed"
    assert path.read_text() == f"{secret}\n" and secret.bit_length() > 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "readable by its owner only"
    assert (path.parent / ".gitignore").read_text().splitlines()[-1] == "*", "never committed"
    assert hidden_secret(config) == secret, "made once, then kept"
    assert sorted(os.listdir(path.parent)) == [".gitignore", "hidden_seed"], "no temporary left"
    other = load_config(course_at(tmp_path / "other"))
    assert hidden_secret(other) != secret, "each course makes its own"


def test_a_configured_secret_wins_and_no_file_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRADER_HIDDEN_SEED", "424242")
    config = load_config(course_at(tmp_path))
    assert hidden_secret(config) == 424242
    assert not (tmp_path / ".grader-secret").exists()


def test_a_damaged_secret_file_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRADER_HIDDEN_SEED")
    config = load_config(course_at(tmp_path))
    path = config.path(config.secret_file)
    path.parent.mkdir()
    path.write_text("not a number\n")
    with pytest.raises(ConfigError, match="hidden_seed must be a non-negative integer"):
        hidden_secret(config)


def test_the_course_is_found_upwards_from_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    course = course_at(tmp_path / "course")
    (course / "exercises").mkdir()
    monkeypatch.chdir(course / "exercises")
    assert load_config().root == course.resolve()


def test_the_course_environment_variable_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    course = course_at(tmp_path / "course")
    monkeypatch.chdir(course_at(tmp_path / "elsewhere"))
    monkeypatch.setenv("GRADER_COURSE", str(course))
    assert load_config().root == course.resolve()
    assert load_config(tmp_path / "elsewhere").root == (tmp_path / "elsewhere").resolve()


def test_a_named_folder_that_is_no_course_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CourseNotFoundError, match="is not a course folder"):
        load_config(tmp_path)


@pytest.mark.slow  # starts the zygote
def test_the_command_says_once_where_it_made_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from grader.cli import main

    monkeypatch.delenv("GRADER_HIDDEN_SEED")
    course = course_at(tmp_path / "course")
    assert main(["--course", str(course), "check"]) == 2  # no exercises/: nothing to grade
    err = capsys.readouterr().err
    made = course.resolve() / ".grader-secret" / "hidden_seed"
    assert f"made a new secret for the hidden variants in {made}; back it up" in err
    assert main(["--course", str(course), "check"]) == 2
    assert "made a new secret" not in capsys.readouterr().err
