"""The grader's settings: one object, read from `[tool.grader]` in pyproject.toml."""

from __future__ import annotations

import dataclasses
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.errors import ConfigError, CourseNotFoundError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

HIDDEN_SEED_ENV = "GRADER_HIDDEN_SEED"
COURSE_ENV = "GRADER_COURSE"
SECRET_BITS = 128  # far past guessing: the seeds of the hidden variants follow from the secret


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
    kit: bool = False
    """This folder is a student kit (`grader release`): no solutions, no secret; `check` grades
    the public variant against the results in `references_dir`."""
    references_dir: str = "references"
    """A kit's precomputed reference results (`grader.precomputed`)."""
    notebooks_dir: str = ""
    """The notebooks `grader check` checks when none is named ("": `exercises_dir`)."""
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
    templates_dir: str = ""
    """Jinja2 templates that replace the feedback pages' own of the same name ("": none)."""
    hidden_seed: int | None = None
    """Secret behind the hidden variant's seed and coefficients (env: GRADER_HIDDEN_SEED);
    unset: the one kept in `secret_file`, made at random the first time it is needed."""
    secret_file: str = ".grader-secret/hidden_seed"
    """Where the secret the grader made itself is kept; its folder tells git to ignore it."""

    def path(self, folder: str) -> Path:
        """Absolute path of one of the course folders named above."""
        return (self.root / folder).resolve()


def find_course_root(named: Path | None = None, submitted: Sequence[Path] = ()) -> Path:
    """The course folder: `named`, else `$GRADER_COURSE`, else the nearest folder at or above the
    current one whose pyproject.toml has `[tool.grader]` and that neither is nor lies inside one
    of the `submitted` folders (a student's pyproject.toml must not choose the checks).
    """
    named = named or (Path(os.environ[COURSE_ENV]) if os.environ.get(COURSE_ENV) else None)
    if named is not None:
        if not _is_course(named):
            raise CourseNotFoundError(
                f"{named} is not a course folder: it has no pyproject.toml with a [tool.grader] "
                "table"
            )
        return named.resolve()
    start = Path.cwd().resolve()
    work = [folder.resolve() for folder in submitted]
    skipped = []
    for folder in (start, *start.parents):
        if any(folder.is_relative_to(inside) for inside in work):
            if (folder / "pyproject.toml").exists():  # never read: a student's file
                skipped.append(folder)
        elif _is_course(folder):
            return folder
    passed_over = "".join(f" ({folder} holds work being graded: not used)" for folder in skipped)
    raise CourseNotFoundError(
        f"no course folder (one whose pyproject.toml has a [tool.grader] table) at or above "
        f"{start}{passed_over}; name it with --course DIR or {COURSE_ENV}=DIR"
    )


def load_config(
    course: Path | None = None, *, submitted: Sequence[Path] = (), **overrides: Any
) -> Config:
    """Read the configuration of the course (see `find_course_root`); keyword arguments win over
    the file."""
    root = find_course_root(course, submitted)
    pyproject = root / "pyproject.toml"
    table = _read_toml(pyproject).get("tool", {}).get("grader", {})
    settings: dict[str, Any] = {**_validated(table, pyproject), "root": root}
    if HIDDEN_SEED_ENV in os.environ:
        settings["hidden_seed"] = _secret(os.environ[HIDDEN_SEED_ENV], HIDDEN_SEED_ENV)
    settings.update({key: value for key, value in overrides.items() if value is not None})
    return Config(**settings)


def hidden_secret(config: Config) -> int:
    """The hidden variant's secret: `config.hidden_seed`, else the one in `secret_file`, which
    is made (at random, readable by its owner only) if there is none yet."""
    if config.hidden_seed is not None:
        return config.hidden_seed
    path = config.path(config.secret_file)
    if not path.is_file():
        _make_secret(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read the hidden variant's secret {path}: {error}") from None
    return _secret(text.strip(), str(path))


def _make_secret(path: Path) -> None:
    """Write a new random secret to `path`, unless another grader does so first."""
    try:
        new_folder = not path.parent.is_dir()
        path.parent.mkdir(parents=True, exist_ok=True)
        if new_folder:  # as .pytest_cache does: git then never commits the folder, whatever
            # the course's own .gitignore says
            (path.parent / ".gitignore").write_text("# made by the grader\n*\n", encoding="utf-8")
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(f"{secrets.randbits(SECRET_BITS)}\n")
        try:
            os.link(partial, path)  # all at once, and never over a secret already there
        except FileExistsError:
            pass
        finally:
            partial.unlink()
    except OSError as error:
        raise ConfigError(
            f"cannot write the hidden variant's secret to {path} ({error.strerror}); "
            f"set {HIDDEN_SEED_ENV} instead"
        ) from None


def _is_course(folder: Path) -> bool:
    pyproject = folder / "pyproject.toml"
    return pyproject.is_file() and "grader" in _read_toml(pyproject).get("tool", {})


def _validated(table: dict[str, Any], source: Path) -> dict[str, Any]:
    fields = {f.name: f for f in dataclasses.fields(Config) if f.name != "root"}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(
                f"{source}: unknown key {key!r} in [tool.grader]; known keys: {', '.join(fields)}"
            )
        default = getattr(Config(), key)
        expected = int if default is None else type(default)  # None: the secret, an integer
        if expected is float and isinstance(value, int):
            continue
        if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            raise ConfigError(
                f"{source}: [tool.grader] {key} must be a {expected.__name__}, got {value!r}"
            )
    if "hidden_seed" in table:
        _secret(str(table["hidden_seed"]), f"{source}: [tool.grader] hidden_seed")
    return dict(table)


def _secret(text: str, source: str) -> int:
    """The hidden variant's secret from `text`: a non-negative integer."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        # the text itself is not repeated: it may be (most of) the secret
        raise ConfigError(f"{source} must be a non-negative integer (the hidden variant's secret)")
    return value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror})") from None
