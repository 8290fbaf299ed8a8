from __future__ import annotations

from pathlib import Path

import pytest

from grader.config import load_config
from grader.errors import ConfigError


def course_at(tmp_path: Path, table: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(f"[tool.grader]\n{table}\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    return tmp_path / "sub"


def test_settings_come_from_the_nearest_course(tmp_path: Path) -> None:
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
    assert load_config(course_at(tmp_path, "")).hidden_seed == 99
    monkeypatch.setenv("GRADER_HIDDEN_SEED", "abc")
    with pytest.raises(ConfigError, match="GRADER_HIDDEN_SEED must be an integer"):
        load_config(tmp_path)
