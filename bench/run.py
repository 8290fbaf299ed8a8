"""Throughput benchmark: `grader grade` of a synthetic class against the compute floor.

    .venv/bin/python bench/run.py [--submissions N] [--notebooks 01_autograd_basics,...]
                                  [--workers W] [--repeats R] [--baseline DIR]
                                  [--memory] [--with-nbconvert] [--with-nbgrader]
    .venv/bin/python bench/run.py --follow-through K [--submissions N] [--repeats R]
                                  [--baseline DIR] [--workers W]
    .venv/bin/python bench/run.py --cluster local2|tcp://HOST:PORT [--submissions N]
                                  [--notebooks ...] [--repeats R] [--workers W]

Builds N submissions (default 6) of the course's notebooks (default: all five) from the
solutions, computes the references once, then measures, in one run:

- `grader grade` of the whole class into a fresh gradebook (both variant runs of every
  notebook) and the compute floor (the notebooks' code cells run in already warm interpreters,
  torch, numpy and matplotlib imported, twice per submission as the grader does, split over the
  cores), in R interleaved rounds (the order rotates each round); it prints the medians, the
  ratio grade / floor (target <= 1.5), the overhead per notebook execution ((grade - floor) x
  workers / executions, target <= 0.25 s), and from the grader's progress lines when, from its
  start, it had listed the notebooks (its start-up), graded the first and graded the last;
- a single-notebook `grader check` of each notebook (median of R rounds) against that notebook
  run twice as a plain `python` script;
- the commands that run no notebook (`--help`, `export --csv`, `feedback`) on the class's
  gradebook: wall and getrusage CPU, medians of at least 5 rounds;
- with `--memory`, peak memory of one more `grade` run (the grader's process and, sampled, the
  grader with all its kernels, as RSS and as PSS: forked kernels share pages that RSS counts
  once per process). Sampling PSS walks every process's page tables under its memory lock: it
  slowed the measured grade by about 7%, so the timed runs are not sampled;
- with `--with-nbconvert`, serial `jupyter nbconvert --execute` of the same notebooks, once each;
- with `--with-nbgrader`, `nbgrader autograde` of the same submissions (serial, once each, as
  nbgrader does) in a virtual environment of its own, created once outside the repository (see
  bench/nbgrader_bench.py for the command).

With `--baseline DIR` (a checkout of another version of the grader, e.g. `git archive <commit>
grader | tar -x -C DIR`, run with this environment's Python and the same course), every grade,
check and command is timed with it too, interleaved with ours. It is not part of the test suite.

With `--follow-through K`, it measures follow-through credit instead: N submissions of
02_linear_regression_numpy, all right ("clean"), and the same class with a wrong `gradient` (off
by a factor of 2, the loops right) in K of them ("wrong": K notebooks need a follow-through run
per variant). Both classes are graded R times, interleaved, each into a fresh gradebook (and by
the baseline too, with `--baseline`), so that the normal path can be compared.

With `--cluster`, it measures the Dask runner instead: the class graded R times here (W workers)
and on a Dask cluster (`grade --cluster`), interleaved, each into a fresh gradebook, and the
ratio of the medians (target <= 1.15). `local2` (`localN`) starts a scheduler and N one-thread
worker processes on this machine (`distributed.LocalCluster`); an address uses that cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import nbformat
from nbgrader_bench import autograde_seconds, ensure_venv

from grader.prepare import RUNS_PER_NOTEBOOK

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
COURSE_NOTEBOOKS = sorted(path.stem for path in (ROOT / "solutions").glob("*.ipynb"))
T = TypeVar("T")


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
    graders = grader_programs(args, env)
    print(
        f"follow-through: {args.submissions} submissions of {FOLLOW_THROUGH_NOTEBOOK}, "
        f"{args.follow_through} with a wrong gradient; {args.workers} workers, "
        f"{os.cpu_count()} cores, {args.repeats} interleaved rounds"
    )
    warm_references(work / "clean" / "student000", env)
    cases = [(grader, name) for grader in graders for name in classes]
    times: dict[tuple[str, str], list[tuple[float, float]]] = {case: [] for case in cases}
    for round_ in range(args.repeats):
        for grader, name in rotated(cases, round_):
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


def grader_programs(
    args: argparse.Namespace, env: dict[str, str]
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """The graders to time: this environment's, and with `--baseline DIR` that checkout's."""
    graders: dict[str, tuple[list[str], dict[str, str]]] = {"ours": ([str(BIN / "grader")], env)}
    if args.baseline is not None:
        baseline_env = {**env, "PYTHONPATH": str(args.baseline.resolve())}
        # -P: not this checkout's `grader` from the working directory, the baseline's
        graders["baseline"] = ([sys.executable, "-P", "-m", "grader.cli"], baseline_env)
    return graders


def rotated(items: list[T], round_: int) -> list[T]:
    """`items` starting at a different one each round, so that no case always runs first."""
    shift = round_ % len(items)
    return items[shift:] + items[:shift]


@dataclass(frozen=True)
class GradeTimeline:
    """A `grader grade` run: its wall time, and when it said what, in seconds from its start."""

    wall: float
    listed: float  # "N notebook(s) to grade": start-up, the gradebook and the collection done
    first: float  # the first notebook graded (its runs waited for the zygote and references)
    last: float  # the last notebook graded; after it, only the command's exit


def run_grade(argv: list[str], env: dict[str, str]) -> GradeTimeline:
    """Time a `grader grade` run from its progress lines: on a pipe the grader writes one flushed
    line per stage and per graded notebook."""
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    listed, graded = math.nan, [math.nan]
    for line in process.stderr:
        now = time.perf_counter() - started
        if line.startswith("grader: ["):
            graded.append(now)
        elif line.endswith(" to grade\n"):
            listed = now
    process.wait()
    wall = time.perf_counter() - started
    return GradeTimeline(wall, listed, graded[min(1, len(graded) - 1)], graded[-1])


def warm_references(student: Path, env: dict[str, str]) -> None:
    """Compute the references once, so that every timing sees the same warm cache."""
    notebooks = sorted(map(str, student.glob("*.ipynb")))
    command = [str(BIN / "grader"), "--course", str(ROOT), "check", *notebooks, "--workers", "1"]
    subprocess.run(
        command, check=False, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def cluster_cost(work: Path, args: argparse.Namespace, env: dict[str, str]) -> None:
    """`grade` of the class here and on a Dask cluster, interleaved (see the module doc)."""
    from distributed import LocalCluster

    notebooks = args.notebooks.split(",")
    students = build_class(work / "class", notebooks, args.submissions)
    warm_references(students[0], env)
    with contextlib.ExitStack() as stack:
        address = args.cluster
        if address.startswith("local"):
            workers = int(address.removeprefix("local") or 2)
            dask = LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None)
            address = stack.enter_context(dask).scheduler_address
        print(
            f"cluster: {args.submissions} submissions x {len(notebooks)} notebooks, here with "
            f"{args.workers} workers against {args.cluster} ({address}), {args.repeats} rounds"
        )
        times: dict[str, list[float]] = {"local": [], "dask": []}
        for round_ in range(args.repeats):
            for runner in rotated(list(times), round_):
                gradebook = work / f"{runner}-{round_}.db"
                command = grade_command(work / "class", gradebook, args.workers)
                if runner == "dask":  # in place of `--workers W`
                    command = [*command[:-2], "--cluster", address]
                times[runner].append(run_timed(command, env))
                print(f"  round {round_}: {runner:5} {times[runner][-1]:6.1f} s  "
                      f"{class_score(gradebook)}")  # fmt: skip
    local, dask_ = statistics.median(times["local"]), statistics.median(times["dask"])
    print(f"median: local {local:.1f} s, dask {dask_:.1f} s")
    print(f"ratio dask / local: {dask_ / local:.2f}  (target <= 1.15)")


def course_cost(work: Path, args: argparse.Namespace, env: dict[str, str]) -> None:
    """`grade` of the class against the compute floor, interleaved, then the single checks and
    the commands' start-up (see the module doc)."""
    notebooks = args.notebooks.split(",")
    students = build_class(work / "class", notebooks, args.submissions)
    paths = [student / f"{name}.ipynb" for student in students for name in notebooks]
    executions = RUNS_PER_NOTEBOOK * len(paths)
    print(
        f"class: {args.submissions} submissions x {len(notebooks)} notebooks, {args.workers} "
        f"workers, {os.cpu_count()} cores, {executions} notebook executions, "
        f"{args.repeats} interleaved rounds"
    )
    warm_references(students[0], env)
    graders = grader_programs(args, env)
    timelines: dict[str, list[GradeTimeline]] = {name: [] for name in graders}
    floors: list[float] = []
    for round_ in range(args.repeats):
        for step in rotated([*graders, "floor"], round_):
            if step == "floor":
                floors.append(compute_floor(paths, args.workers))
                print(f"  round {round_}: compute floor {floors[-1]:6.1f} s")
                continue
            program, grader_env = graders[step]
            gradebook = work / f"{step}-{round_}.db"
            command = grade_command(work / "class", gradebook, args.workers, program)
            timelines[step].append(run_grade(command, grader_env))
            print(
                f"  round {round_}: {step:8} grade {timelines[step][-1].wall:6.1f} s  "
                f"{class_score(gradebook)}"
            )
    floor = statistics.median(floors)
    print(f"compute floor (warm, twice each, {args.workers} processes): {floor:6.1f} s")
    for name, runs in timelines.items():
        _print_grade_against_floor(name, runs, floor, executions / args.workers)
    if args.memory:
        grade_memory(work, args, env)
    if args.with_nbconvert:
        nbconvert_seconds(work, paths, env)
    if args.with_nbgrader:
        nbgrader = autograde_seconds(work, ensure_venv(), notebooks, students)
        ours = statistics.median(run.wall for run in timelines["ours"])
        print(
            f"nbgrader autograde, serial: {nbgrader:.1f} s "
            f"({nbgrader / len(paths):.2f} s per submission notebook); "
            f"ratio nbgrader / grader grade: {nbgrader / ours:.2f} (target >= 3)"
        )
    single_checks(work, students[0], notebooks, graders, args.repeats)
    command_start_up(work, work / f"ours-{args.repeats - 1}.db", graders, args.repeats)


def _print_grade_against_floor(
    name: str, runs: list[GradeTimeline], floor: float, executions_per_worker: float
) -> None:
    walls = [run.wall for run in runs]
    grade, listed, first, last = (
        statistics.median(values)
        for values in zip(
            *((run.wall, run.listed, run.first, run.last) for run in runs), strict=True
        )
    )
    print(
        f"{name}: grader grade, both variants: {grade:6.1f} s (range {min(walls):.1f}-"
        f"{max(walls):.1f}); from its start, medians: notebooks listed at {listed:.1f} s, first "
        f"graded at {first:.1f} s, last at {last:.1f} s"
    )
    print(f"  ratio grade / floor: {grade / floor:5.2f}  (target <= 1.5)")
    print(
        f"  overhead per notebook execution: {(grade - floor) / executions_per_worker:5.2f} s "
        f"(target <= 0.25); without the start-up until the notebooks are listed: "
        f"{(grade - listed - floor) / executions_per_worker:5.2f} s"
    )


def grade_memory(work: Path, args: argparse.Namespace, env: dict[str, str]) -> None:
    """Peak memory of a `grade` run of the class, sampled (which slows that run)."""
    command = grade_command(work / "class", work / "sampled.db", args.workers)
    sampled, own_peak, (tree_rss, tree_pss) = run_measured(command, env)
    print(f"memory, from a grade run of its own ({sampled:.1f} s with the sampler):")
    print(f"  peak RSS of the grader process: {own_peak / 1024:.0f} MiB")
    for name, peak in (("RSS", tree_rss), ("PSS", tree_pss)):
        print(
            f"  peak {name}, grader + kernels: {peak / 1024:.0f} MiB = "
            f"{peak / 1024 / args.workers:.0f} MiB per worker"
        )


def nbconvert_seconds(work: Path, paths: list[Path], env: dict[str, str]) -> None:
    """Serial `jupyter nbconvert --execute` of the class's notebooks, once each."""
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
    print(f"nbconvert --execute, serial, once each: {time.perf_counter() - started:6.1f} s")


def single_checks(
    work: Path,
    student: Path,
    notebooks: list[str],
    graders: dict[str, tuple[list[str], dict[str, str]]],
    repeats: int,
) -> None:
    """`grader check` of one notebook at a time (medians of interleaved rounds) against the
    notebook run twice as a plain script."""
    cases = [(grader, name) for name in notebooks for grader in graders]
    times: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
    for round_ in range(repeats):
        for grader, name in rotated(cases, round_):
            program, env = graders[grader]
            command = [*program, "--course", str(ROOT), "check", str(student / f"{name}.ipynb")]
            times[grader, name].append(run_timed(command, env))
    for name in notebooks:
        plain = 2 * script_seconds(student / f"{name}.ipynb", work)
        for grader in graders:
            one = statistics.median(times[grader, name])
            print(
                f"{grader}: single `grader check` {name}: {one:5.1f} s; plain script x2 "
                f"{plain:5.1f} s; ratio {one / plain:5.2f}"
            )


def command_start_up(
    work: Path,
    gradebook: Path,
    graders: dict[str, tuple[list[str], dict[str, str]]],
    repeats: int,
) -> None:
    """Wall and CPU seconds of the commands that run no notebook, on the class's gradebook."""
    commands = {
        "--help": ["--help"],
        "export --csv": ["export", "--db", str(gradebook), "--csv", str(work / "grades.csv")],
        "feedback": ["feedback", "--db", str(gradebook), "--out", str(work / "feedback")],
    }
    cases = [(grader, name) for name in commands for grader in graders]
    times: dict[tuple[str, str], list[tuple[float, float]]] = {case: [] for case in cases}
    for round_ in range(max(repeats, 5)):  # a second or less each: cheap to repeat
        for grader, name in rotated(cases, round_):
            program, env = graders[grader]
            command = [*program, "--course", str(ROOT), *commands[name]]
            times[grader, name].append(run_timed_with_cpu(command, env))
    for grader, name in cases:
        wall = statistics.median(wall for wall, _ in times[grader, name])
        cpu = statistics.median(cpu for _, cpu in times[grader, name])
        print(f"{grader}: `grader {name}`: {wall:5.2f} s, CPU {cpu:5.2f} s (medians)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--submissions", type=int, default=6)
    parser.add_argument("--notebooks", default=",".join(COURSE_NOTEBOOKS))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="a checkout of the grader to time the same cases with, interleaved",
    )
    parser.add_argument(
        "--memory", action="store_true", help="also sample the memory of a grade run of its own"
    )
    parser.add_argument(
        "--with-nbconvert",
        action="store_true",
        help="also time serial `jupyter nbconvert --execute` of the class",
    )
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
    parser.add_argument(
        "--cluster",
        default=None,
        metavar="local2|ADDRESS",
        help="time the Dask runner instead, against the local one (see the module doc)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="grader-bench-"))
    env = {**os.environ, "MPLBACKEND": "agg"}
    try:
        if args.cluster is not None:
            cluster_cost(work, args, env)
        elif args.follow_through is not None:
            follow_through_cost(work, args, env)
        else:
            course_cost(work, args, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
