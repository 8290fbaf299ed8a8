"""`nbgrader autograde` of the bench's synthetic class, in a virtual environment of its own.

The environment lives outside the repository (in $XDG_CACHE_HOME, by default ~/.cache) and is
reused once it exists; `ensure_venv` creates it when it is missing, with this one command (from
the repository root):

    python3 -m venv ~/.cache/grader-bench/nbgrader-venv && \\
        ~/.cache/grader-bench/nbgrader-venv/bin/pip install -q -c constraints.txt \\
        nbgrader torch==2.13.0 numpy matplotlib ipykernel

and then installs a kernelspec, `nbgrader-bench`, that runs that environment's python, into the
environment's own `share/jupyter` (found through JUPYTER_PATH), so that the notebooks' imports
work in nbgrader's kernels. `bench/run.py --with-nbgrader` uses it.

The course folder follows nbgrader's layout: `nbgrader_config.py`, `source/<assignment>/` with
the solution notebooks (they carry nbgrader's schema-3 cell metadata), then, after
`nbgrader generate_assignment`, `submitted/<student>/<assignment>/` with the class's notebooks.
Only `nbgrader autograde <assignment> --force` is timed; it runs the notebooks one at a time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
VENV = CACHE / "grader-bench" / "nbgrader-venv"
KERNEL = "nbgrader-bench"
ASSIGNMENT = "bench"
PACKAGES = ["nbgrader", "torch==2.13.0", "numpy", "matplotlib", "ipykernel"]
CONFIG = """\
c = get_config()  # noqa: F821
c.CourseDirectory.root = {root!r}
c.CourseDirectory.course_id = "grader-bench"
c.ExecutePreprocessor.timeout = 300
c.ExecutePreprocessor.kernel_name = {kernel!r}
"""


def ensure_venv(venv: Path = VENV) -> Path:
    """The nbgrader environment, created (see the module docstring) when it is missing."""
    if not (venv / "bin" / "nbgrader").exists():
        shutil.rmtree(venv, ignore_errors=True)  # a half-made one from an interrupted run
        venv.parent.mkdir(parents=True, exist_ok=True)
        print(f"creating the nbgrader environment in {venv} (once) ...", flush=True)
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "-q", "-c", str(ROOT / "constraints.txt")]
        subprocess.run([*pip, *PACKAGES], check=True)
    if not (venv / "share" / "jupyter" / "kernels" / KERNEL / "kernel.json").exists():
        install = [str(venv / "bin" / "python"), "-m", "ipykernel", "install"]
        subprocess.run(
            [*install, "--prefix", str(venv), "--name", KERNEL],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return venv


def _environment(venv: Path, course: Path) -> dict[str, str]:
    """The variables nbgrader runs with: the venv first, its kernelspec, no user jupyter config."""
    env = {**os.environ, "MPLBACKEND": "agg", "VIRTUAL_ENV": str(venv)}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["JUPYTER_PATH"] = str(venv / "share" / "jupyter")
    env["JUPYTER_CONFIG_DIR"] = str(course / ".jupyter")
    return env


def build_course(folder: Path, venv: Path, notebooks: list[str], students: list[Path]) -> Path:
    """The course folder, assignment generated and the class's notebooks submitted."""
    course = folder / "nbgrader-course"
    source = course / "source" / ASSIGNMENT
    source.mkdir(parents=True)
    (course / ".jupyter").mkdir()
    (course / "nbgrader_config.py").write_text(
        CONFIG.format(root=str(course), kernel=KERNEL), encoding="utf-8"
    )
    for name in notebooks:
        shutil.copy(ROOT / "solutions" / f"{name}.ipynb", source / f"{name}.ipynb")
    subprocess.run(
        [str(venv / "bin" / "nbgrader"), "generate_assignment", ASSIGNMENT, "--force"],
        check=True,
        cwd=course,
        env=_environment(venv, course),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for student in students:
        submitted = course / "submitted" / student.name / ASSIGNMENT
        submitted.mkdir(parents=True)
        for name in notebooks:
            shutil.copy(student / f"{name}.ipynb", submitted / f"{name}.ipynb")
    return course


def _check_autograded(course: Path, notebooks: list[str], students: list[Path]) -> None:
    """Raise RuntimeError unless every submitted notebook came back with all its cells run."""
    for student in students:
        for name in notebooks:
            path = course / "autograded" / student.name / ASSIGNMENT / f"{name}.ipynb"
            if not path.exists():
                raise RuntimeError(f"nbgrader autograde wrote no {path}")
            cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
            unrun = [i for i, cell in enumerate(cells) if cell.get("execution_count") is None]
            errors = [
                i
                for i, cell in enumerate(cells)
                if any(output.output_type == "error" for output in cell.get("outputs", []))
            ]
            if not cells or unrun or errors:
                raise RuntimeError(
                    f"nbgrader autograde did not run {path} cleanly: code cells not run {unrun}, "
                    f"with errors {errors}"
                )


def autograde_seconds(
    folder: Path, venv: Path, notebooks: list[str], students: list[Path]
) -> float:
    """Wall seconds of `nbgrader autograde` of the class, checked to have run every notebook."""
    course = build_course(folder, venv, notebooks, students)
    log = folder / "nbgrader-autograde.log"
    with log.open("wb") as output:
        started = time.perf_counter()
        completed = subprocess.run(
            [str(venv / "bin" / "nbgrader"), "autograde", ASSIGNMENT, "--force"],
            cwd=course,
            env=_environment(venv, course),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        seconds = time.perf_counter() - started
    if completed.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"nbgrader autograde exited {completed.returncode}:\n{tail}")
    _check_autograded(course, notebooks, students)
    return seconds
