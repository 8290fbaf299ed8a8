"""Throughput benchmark: `grader grade` of a synthetic class, against nbconvert and the floor.

    .venv/bin/python bench/run.py [--submissions N] [--notebooks 02_linear_regression_numpy,...]
                                  [--workers W] [--with-nbgrader]
    .venv/bin/python bench/run.py --follow-through K [--submissions N] [--repeats R]
                                  [--baseline DIR] [--workers W]

Builds N submissions from the solution notebooks, then measures, in one run:

- our `grader grade` of the whole class into a fresh gradebook (both variant runs of every
  notebook): wall time; then, in a second run into another fresh gradebook, peak memory (the
  grader's process and, sampled, the grader with all its kernels, as RSS and as PSS: forked
  kernels share pages that RSS counts once per process). Sampling PSS walks every process's
  page tables under its memory lock: it slowed the measured grade by about 7%, so the timed run
  is not sampled;
- serial `jupyter nbconvert --execute` of the same notebooks, once each;
- with `--with-nbgrader`, `nbgrader autograde` of the same submissions (serial, once each, as
  nbgrader does) in a virtual environment of its own, created once outside the repository (see
  bench/nbgrader_bench.py for the command);
- the compute floor: the notebooks' code cells run in already warm interpreters (torch, numpy
  and matplotlib imported), twice per submission as the grader does, split over the cores;
- a single-notebook `grader check` against that notebook run twice as a plain `python` script;

and prints the ratios. It is not part of the test suite.

With `--follow-through K`, it measures follow-through credit instead: N submissions of
02_linear_regression_numpy, all right ("clean"), and the same class with a wrong `gradient` (off
by a factor of 2, the loops right) in K of them ("wrong": K notebooks need a follow-through run
per variant). Both classes are graded R times, interleaved (the order rotates each round), each
into a fresh gradebook; with `--baseline DIR` (a checkout of the grader without follow-through,
e.g. `git archive <commit> grader | tar -x -C DIR`, run with this environment's Python and the
same course) the baseline grades them too, so that the normal path can be compared.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbgrader_bench import autograde_seconds, ensure_venv

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEFAULT_NOTEBOOKS = "02_linear_regression_numpy,05_nonlinear_regression"


def build_class(folder: Path, notebooks: list[str], submissions: int) -> list[Path]:
    """`submissions` student folders, each with a copy of every solution notebook."""
    students = []
    for index in range(submissions):
        student = folder / f"student{index:03d}"
        student.mkdir(parents=True)
        for name in notebooks:
            shutil.copy(ROOT / "solutions" / f"{name}.ipynb", student / f"{name}.ipynb")
        students.append(student)
    return students


def class_score(gradebook: Path) -> str:
    """Notebooks graded and points earned, read back from the gradebook."""
    from grader.gradebook import Gradebook

    with Gradebook(str(gradebook)) as opened:
        results = [graded.result for graded in opened.latest()]
    earned, available = sum(r.score for r in results), sum(r.max_score for r in results)
    return f"{len(results)} notebooks, score {earned:g}/{available:g}"


def _tree_memory_kb(pid: int) -> tuple[int, int]:
    """Resident and proportional memory (RSS, PSS) of a process and its descendants, in KiB.

    RSS counts a page shared by several processes (a forked process's copy-on-write pages, the
    libraries they all map) once per process; PSS divides it among them.
    """
    rss = pss = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            children = [
                child
                for task in Path(f"/proc/{current}/task").iterdir()
                for child in (task / "children").read_text().split()
            ]
        except OSError:
            continue
        fields = dict(line.split()[:2] for line in rollup.splitlines()[1:])
        rss += int(fields.get("Rss:", 0))
        pss += int(fields.get("Pss:", 0))
        stack.extend(int(child) for child in children)
    return rss, pss


def run_timed(argv: list[str], env: dict[str, str]) -> float:
    """Wall seconds of a command, with nothing else sampling it."""
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def run_measured(
    argv: list[str], env: dict[str, str] | None = None
) -> tuple[float, int, tuple[int, int]]:
    """Wall seconds, peak RSS of the process (KiB) and sampled peaks of its tree (RSS, PSS KiB)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    own_peak = tree_rss = tree_pss = 0
    samples = 0
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
            own_peak = max(
                own_peak,
                next(int(s.split()[1]) for s in status.splitlines() if s.startswith("VmHWM")),
            )
        except (OSError, StopIteration):
            pass
        if samples % 4 == 0:  # reading smaps_rollup walks page tables: not every 50 ms
            rss, pss = _tree_memory_kb(process.pid)
            tree_rss, tree_pss = max(tree_rss, rss), max(tree_pss, pss)
        samples += 1
        time.sleep(0.05)
    return time.perf_counter() - started, own_peak, (tree_rss, tree_pss)


def grade_command(
    folder: Path, gradebook: Path, workers: int, program: list[str] | None = None
) -> list[str]:
    """`grader grade` of the class in `folder` into `gradebook`, with the course's cache
    (`program`: the grader to run, by default this environment's)."""
    return [
        *(program or [str(BIN / "grader")]),
        "--course",
        str(ROOT),
        "grade",
        str(folder),
        "--db",
        str(gradebook),
        "--workers",
        str(workers),
    ]


def _code_cells(path: Path, parameters: dict[str, object] | None) -> list[str]:
    from grader.notebook import is_parameters, render_parameters

    nb = nbformat.read(path, as_version=4)
    return [
        render_parameters(parameters)
        if parameters is not None and is_parameters(cell)
        else cell.source
        for cell in nb.cells
        if cell.cell_type == "code"
    ]


def _floor_worker(
    jobs: list[tuple[str, dict[str, object]]], threads: int, queue: multiprocessing.Queue
) -> None:
    os.environ["MPLBACKEND"] = "agg"
    sys.stdout = open(os.devnull, "w")
    import matplotlib.pyplot as plt
    import numpy  # noqa: F401
    import torch

    torch.set_num_threads(threads)
    cells = [(_code_cells(Path(path), parameters)) for path, parameters in jobs]
    started = time.perf_counter()
    for sources in cells:
        namespace: dict[str, object] = {"__name__": "__main__"}
        for source in sources:
            exec(compile(source, "<cell>", "exec"), namespace)
        plt.close("all")
    queue.put(time.perf_counter() - started)


def compute_floor(notebook_paths: list[Path], workers: int) -> float:
    """Wall seconds of the notebooks' code, twice each, in warm interpreters over `workers`."""
    from grader.config import hidden_secret, load_config
    from grader.course import find_exercises, load_check_spec
    from grader.notebook import read_course_notebook
    from grader.prepare import variants

    config = load_config(ROOT)
    secret = hidden_secret(config)
    exercises = find_exercises(config)
    jobs = []
    for path in notebook_paths:
        exercise = exercises[path.stem]
        pristine = read_course_notebook(exercise.exercise_path)
        plan = variants(pristine, path.stem, load_check_spec(exercise), "cpu", secret)
        jobs.extend((str(path), variant.parameters) for variant in plan)
    queue: multiprocessing.Queue = multiprocessing.Queue()
    shares = [jobs[index::workers] for index in range(workers)]
    threads = max(1, (os.cpu_count() or 1) // workers)
    processes = [
        multiprocessing.Process(target=_floor_worker, args=(share, threads, queue))
        for share in shares
    ]
    for process in processes:
        process.start()
    seconds = [queue.get() for _ in processes]
    for process in processes:
        process.join()
    return max(seconds)


def script_seconds(notebook: Path, folder: Path) -> float:
    """Wall seconds of the notebook as a plain `python` script (imports included)."""
    script = folder / f"{notebook.stem}.py"
    script.write_text("\n\n".join(_code_cells(notebook, None)), encoding="utf-8")
    env = {**os.environ, "MPLBACKEND": "agg"}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(script)], check=True, env=env, cwd=folder, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - started


FOLLOW_THROUGH_NOTEBOOK = "02_linear_regression_numpy"
WRONG_GRADIENT = ("manual_gradient", "dl_dw = 2 * r * x", "dl_dw = 4 * r * x")


def break_gradient(notebook: Path) -> None:
    """Make the `gradient` of a 02 submission off by a factor of 2, its loops still right."""
    nb = nbformat.read(notebook, as_version=4)
    grade_id, old, new = WRONG_GRADIENT
    (cell,) = [c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] == grade_id]
    if old not in cell.source:
        raise SystemExit(f"{notebook}: cell {grade_id} has no {old!r} to break")
    cell.source = cell.source.replace(old, new)
    nbformat.write(nb, notebook)


def follow_through_cost(work: Path, args: argparse.Namespace, env: dict[str, str]) -> None:
    """Interleaved `grader grade` times of the clean and the wrong class (see the module doc)."""
    notebooks = [FOLLOW_THROUGH_NOTEBOOK]
    classes = {"clean": work / "clean", "wrong": work / "wrong"}
    build_class(classes["clean"], notebooks, args.submissions)
    for student in build_class(classes["wrong"], notebooks, args.submissions)[
        : args.follow_through
    ]:
        break_gradient(student / f"{FOLLOW_THROUGH_NOTEBOOK}.ipynb")
    graders: dict[str, tuple[list[str], dict[str, str]]] = {"ours": ([str(BIN / "grader")], env)}
    if args.baseline is not None:
        baseline_env = {**env, "PYTHONPATH": str(args.baseline.resolve())}
        # -P: not this checkout's `grader` from the working directory, the baseline's
        graders["baseline"] = ([sys.executable, "-P", "-m", "grader.cli"], baseline_env)
    print(
        f"follow-through: {args.submissions} submissions of {FOLLOW_THROUGH_NOTEBOOK}, "
        f"{args.follow_through} with a wrong gradient; {args.workers} workers, "
        f"{os.cpu_count()} cores, {args.repeats} interleaved rounds"
    )
    warm = [str(BIN / "grader"), "--course", str(ROOT), "check", "--workers", "1"]
    first = work / "clean" / "student000" / f"{FOLLOW_THROUGH_NOTEBOOK}.ipynb"
    subprocess.run([*warm, str(first)], check=False, stdout=subprocess.DEVNULL)
    cases = [(grader, name) for grader in graders for name in classes]
    times: dict[tuple[str, str], list[tuple[float, float]]] = {case: [] for case in cases}
    for round_ in range(args.repeats):
        shift = round_ % len(cases)
        for grader, name in cases[shift:] + cases[:shift]:
            program, grader_env = graders[grader]
            gradebook = work / f"{grader}-{name}-{round_}.db"
            command = grade_command(classes[name], gradebook, args.workers, program)
            wall, cpu = run_timed_with_cpu(command, grader_env)
            times[grader, name].append((wall, cpu))
            print(
                f"  round {round_}: {grader:8} {name:5} {wall:6.1f} s, CPU {cpu:6.1f} s  "
                f"{class_score(gradebook)}"
            )
    _print_follow_through_medians(times, args)


def run_timed_with_cpu(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds of a command, and the CPU seconds (getrusage) of it and of the processes it
    waited for: less disturbed by other load on the machine than wall time. The zygote is not
    waited for (it dies with the grader), so its kernels' CPU is mostly not in it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = run_timed(argv, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def _print_follow_through_medians(
    times: dict[tuple[str, str], list[tuple[float, float]]], args: argparse.Namespace
) -> None:
    medians: dict[tuple[str, str], tuple[float, float]] = {}
    for (grader, name), values in times.items():
        walls, cpus = [wall for wall, _ in values], [cpu for _, cpu in values]
        medians[grader, name] = statistics.median(walls), statistics.median(cpus)
        print(
            f"{grader:8} {name:5} median {medians[grader, name][0]:6.1f} s "
            f"(range {min(walls):.1f}-{max(walls):.1f}), CPU {medians[grader, name][1]:6.1f} s "
            f"(range {min(cpus):.1f}-{max(cpus):.1f})"
        )
    (clean_wall, clean_cpu), (wrong_wall, wrong_cpu) = (
        medians["ours", "clean"],
        medians["ours", "wrong"],
    )
    wall, cpu = wrong_wall - clean_wall, wrong_cpu - clean_cpu
    per = max(1, args.follow_through)
    print(
        f"follow-through: {wall:+.1f} s wall, {cpu:+.1f} s CPU for the class; "
        f"{cpu / per:.2f} s CPU per notebook that needed it"
    )
    if args.baseline is not None:
        for name in ("clean", "wrong"):
            ours, base = medians["ours", name], medians["baseline", name]
            print(
                f"ours / baseline, {name} class: wall {ours[0] / base[0]:.3f}, "
                f"CPU {ours[1] / base[1]:.3f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--submissions", type=int, default=6)
    parser.add_argument("--notebooks", default=DEFAULT_NOTEBOOKS)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--with-nbgrader",
        action="store_true",
        help="also time `nbgrader autograde` of the class (creates its environment once)",
    )
    parser.add_argument(
        "--follow-through",
        type=int,
        default=None,
        metavar="K",
        help="time follow-through credit instead: K submissions with a wrong gradient",
    )
    parser.add_argument("--repeats", type=int, default=3, help="rounds, with --follow-through")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="with --follow-through: a checkout of the grader to time the same classes with",
    )
    args = parser.parse_args()
    if args.follow_through is not None:
        work = Path(tempfile.mkdtemp(prefix="grader-bench-"))
        try:
            follow_through_cost(work, args, {**os.environ, "MPLBACKEND": "agg"})
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    notebooks = args.notebooks.split(",")
    nbgrader_venv = ensure_venv() if args.with_nbgrader else None
    work = Path(tempfile.mkdtemp(prefix="grader-bench-"))
    env = {**os.environ, "MPLBACKEND": "agg"}
    try:
        students = build_class(work / "class", notebooks, args.submissions)
        paths = [student / f"{name}.ipynb" for student in students for name in notebooks]
        executions = 2 * len(paths)
        cache = ["--course", str(ROOT)]
        print(
            f"class: {args.submissions} submissions x {len(notebooks)} notebooks, "
            f"{args.workers} workers, {os.cpu_count()} cores, {executions} notebook executions"
        )
        # References once, so that every timing below sees the same warm cache.
        subprocess.run(
            [
                str(BIN / "grader"),
                *cache,
                "check",
                *map(str, students[0].glob("*.ipynb")),
                "--workers",
                "1",
            ],
            check=False,
            stdout=subprocess.DEVNULL,
        )

        gradebook, sampled_gradebook = work / "gradebook.db", work / "sampled.db"
        ours = run_timed(grade_command(work / "class", gradebook, args.workers), env)
        print(f"grader grade (both variants):   {ours:8.1f} s   {class_score(gradebook)}")
        sampled, own_peak, (tree_rss, tree_pss) = run_measured(
            grade_command(work / "class", sampled_gradebook, args.workers), env
        )
        print(f"  memory, from a second grade run ({sampled:.1f} s with the sampler):")
        print(f"  peak RSS of the grader process: {own_peak / 1024:.0f} MiB")
        for name, peak in (("RSS", tree_rss), ("PSS", tree_pss)):
            print(
                f"  peak {name}, grader + kernels: {peak / 1024:.0f} MiB = "
                f"{peak / 1024 / args.workers:.0f} MiB per worker"
            )
        started = time.perf_counter()
        for path in paths:
            subprocess.run(
                [
                    str(BIN / "jupyter"),
                    "nbconvert",
                    "--to",
                    "notebook",
                    "--execute",
                    str(path),
                    "--output-dir",
                    str(work / "nbconvert"),
                    "--output",
                    f"{path.parent.name}-{path.stem}",
                ],
                check=True,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        nbconvert = time.perf_counter() - started
        print(f"nbconvert --execute, serial, once each: {nbconvert:8.1f} s")
        if nbgrader_venv is not None:
            nbgrader = autograde_seconds(work, nbgrader_venv, notebooks, students)
            print(
                f"nbgrader autograde, serial: {nbgrader:.1f} s "
                f"({nbgrader / len(paths):.2f} s per submission notebook)"
            )
            print(f"ratio nbgrader / grader grade: {nbgrader / ours:.2f} (target >= 3)")
        floor = compute_floor(paths, args.workers)
        print(f"compute floor (warm, twice each, {args.workers} processes): {floor:8.1f} s")
        print(
            f"overhead per notebook execution: {(ours - floor) * args.workers / executions:6.2f} s"
        )
        print(f"ratio grader / floor:     {ours / floor:6.2f}  (target <= 1.5)")
        print(f"ratio grader / nbconvert: {ours / nbconvert:6.2f}  (target <= 0.5)")
        for name in notebooks:
            single = students[0] / f"{name}.ipynb"
            one = run_timed([str(BIN / "grader"), *cache, "check", str(single)], env)
            plain = script_seconds(single, work)
            print(
                f"single `grader check` {name}: {one:5.1f} s; plain script x2 {2 * plain:5.1f} s; "
                f"ratio {one / (2 * plain):5.2f} (target <= 1.3)"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
