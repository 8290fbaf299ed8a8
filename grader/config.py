"""The grader's settings: one object, read from `[tool.grader]` in pyproject.toml."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

HIDDEN_SEED_ENV = "GRADER_HIDDEN_SEED"


@dataclass(frozen=True)
class Config:
    """Every setting of the grader, with its default."""

    root: Path = field(default_factory=Path.cwd)
    """The course folder: the one holding pyproject.toml with a `[tool.grader]` table."""
    solutions_dir: str = "solutions"
    """Reference notebooks, with `### BEGIN/END SOLUTION` regions (the source of truth)."""
    exercises_dir: str = "exercises"
    """Student notebooks, written from the solutions by `grader assign`."""
    checks_dir: str = "checks"
    """pytest modules, one per notebook, named `<notebook>.py`."""
    cache_dir: str = ".grader-cache"
    """Where reference results are kept between runs."""
    device: str = "auto"
    """`cpu`, `cuda`, or `auto` (cuda when available)."""
    cell_timeout: float = 60.0
    """Seconds one cell may run before it is interrupted."""
    notebook_timeout: float = 300.0
    """Seconds one whole notebook run may take."""
    memory_limit_mb: int = 2048
    """Memory one kernel, and everything it starts, may use."""
    process_limit: int = 64
    """Processes and threads one kernel may run at once (where cgroups are available)."""
    output_limit_kb: int = 1024
    """Output kept per cell; the rest is dropped with a note."""
    hidden_seed: int = 1729
    """Secret behind the hidden variant's seed and coefficients (env: GRADER_HIDDEN_SEED)."""

    def path(self, folder: str) -> Path:
        """Absolute path of one of the course folders named above."""
        return (self.root / folder).resolve()


def find_course_root(start: Path) -> Path:
    """The nearest folder at or above `start` whose pyproject.toml has `[tool.grader]`."""
    for folder in (start.resolve(), *start.resolve().parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "grader" in _read_toml(pyproject).get("tool", {}):
            return folder
    return start.resolve()


def load_config(start: Path | None = None, **overrides: Any) -> Config:
    """Read the configuration of the course around `start`; keyword arguments win over the file."""
    root = find_course_root(start or Path.cwd())
    pyproject = root / "pyproject.toml"
    table = _read_toml(pyproject).get("tool", {}).get("grader", {}) if pyproject.is_file() else {}
    settings: dict[str, Any] = {**_validated(table, pyproject), "root": root}
    if HIDDEN_SEED_ENV in os.environ:
        settings["hidden_seed"] = _env_int(HIDDEN_SEED_ENV)
    settings.update({key: value for key, value in overrides.items() if value is not None})
    return Config(**settings)


def _validated(table: dict[str, Any], source: Path) -> dict[str, Any]:
    fields = {f.name: f for f in dataclasses.fields(Config) if f.name != "root"}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(
                f"{source}: unknown key {key!r} in [tool.grader]; known keys: {', '.join(fields)}"
            )
        expected = type(getattr(Config(), key))
        if expected is float and isinstance(value, int):
            continue
        if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            raise ConfigError(
                f"{source}: [tool.grader] {key} must be a {expected.__name__}, got {value!r}"
            )
    return dict(table)


def _env_int(name: str) -> int:
    try:
        return int(os.environ[name])
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {os.environ[name]!r}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
