"""`grader grade --cluster`: runs on a real Dask scheduler and two workers on loopback, started
here, graded as locally, surviving a worker killed mid-batch; and what is refused at once."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import distributed
import pytest

from grader import cluster
from grader.cli import main
from grader.config import Config, load_config
from grader.engine.isolation import detect_isolation
from grader.gradebook import Gradebook
from grader.grading import execution_limits
from grader.runner import RunRequest
from tests.conftest import make_cell, make_notebook, submission

DASK = Path(sys.executable).parent / "dask"
RIGHT = "answer = 21 * scale"
SLOW_RIGHT = f"import time\ntime.sleep(1.5)\n{RIGHT}"  # long enough to be killed in


@dataclass
class LoopbackCluster:
    address: str
    workers: dict[str, subprocess.Popen[bytes]]
    """By worker address."""
    client: distributed.Client
    """The test's own view of the scheduler (which runs are where)."""


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as stream:
        return subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def loopback(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackCluster]:
    """A `dask scheduler` and two one-thread `dask worker` processes (no nanny: a killed worker
    stays dead), each on its own port on loopback, stopped at the end."""
    folder = tmp_path_factory.mktemp("dask")
    address_file = folder / "scheduler.json"
    common = ["--no-dashboard"]
    processes = [
        _start(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--scheduler-file", str(address_file), *common],
            folder / "scheduler.log",
        )
    ]  # fmt: skip
    try:
        while not address_file.exists():
            assert processes[0].poll() is None, (folder / "scheduler.log").read_text()
            time.sleep(0.1)
        address = json.loads(address_file.read_text())["address"]
        for name in ("one", "two"):
            processes.append(
                _start(
                    [str(DASK), "worker", address, "--name", name, "--nthreads", "1",
                     "--no-nanny", "--host", "127.0.0.1", "--local-directory", str(folder),
                     *common],
                    folder / f"worker-{name}.log",
                )
            )  # fmt: skip
        with distributed.Client(address, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
            by_name = {info["name"]: a for a, info in client.scheduler_info()["workers"].items()}
            workers = {by_name["one"]: processes[1], by_name["two"]: processes[2]}
            yield LoopbackCluster(address, workers, client)
    finally:  # the workers first: one whose scheduler has gone waits for it to come back
        for process in reversed(processes):
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def own_course(mini_course: Config, tmp_path: Path) -> Config:
    """The mini course with a reference cache of its own: its references run on the cluster."""
    root = tmp_path / "course"
    shutil.copytree(mini_course.root, root, ignore=shutil.ignore_patterns(".grader-cache"))
    return load_config(root, device="cpu")


def scores(db: str) -> dict[str, tuple[float, str]]:
    """Each student's score and the isolation of the run it came from."""
    with Gradebook(db) as gradebook:
        return {g.student: (g.result.score, g.result.isolation) for g in gradebook.latest()}


def run_count(db: str) -> int:
    with Gradebook(db) as gradebook:
        return gradebook.run_count()


@pytest.mark.slow
def test_a_class_graded_on_the_cluster_scores_as_graded_here(
    loopback: LoopbackCluster, own_course: Config, tmp_path: Path
) -> None:
    folder = tmp_path / "class"
    submission(folder / "right", RIGHT)
    submission(folder / "wrong", "answer = 42")
    submission(folder / "raises", "answer = 1 / 0")
    grade = ["--course", str(own_course.root), "grade", str(folder)]
    on_cluster, here = str(tmp_path / "cluster.db"), str(tmp_path / "here.db")
    assert main([*grade, "--db", on_cluster, "--cluster", loopback.address]) == 0
    assert main([*grade, "--db", here]) == 0
    assert scores(on_cluster) == scores(here)
    assert {score for score, _ in scores(on_cluster).values()} == {2.0, 1.0}
    isolation = {isolation for _, isolation in scores(on_cluster).values()}
    assert isolation == {detect_isolation().description}, "the workers' sandbox, recorded"
    assert run_count(on_cluster) == 3
    references = list((own_course.root / own_course.cache_dir / "references").glob("*.json"))
    assert len(references) == 2, "each variant's reference ran once, cached by the client"


def _sleeping(seconds: float) -> RunRequest:
    nb = make_notebook([make_cell(f"import time\ntime.sleep({seconds})", "sleep")])
    return RunRequest.of(nb, [], execution_limits(Config()))


@pytest.mark.slow
def test_closing_the_runner_cancels_the_runs_not_started_and_finishes_the_others(
    loopback: LoopbackCluster,
) -> None:
    with cluster.DaskRunner(loopback.address) as runner:
        assert runner.capacity == 2
        futures = [runner.submit(_sleeping(2)) for _ in range(5)]
        while sum(future.running() for future in futures) < 2:
            time.sleep(0.05)
    running = [f for f in futures if not f.cancelled()]
    assert len(running) == 2, "the two started runs finished; the three waiting were cancelled"
    assert all(f.result().cells[0].status == "ok" for f in running)


def _kill_mid_run(loopback: LoopbackCluster, victim: str, killed: threading.Event) -> None:
    """SIGKILL worker `victim` once one run has been going on there for a second."""
    while True:
        running = set(loopback.client.processing([victim]).get(victim, ()))
        time.sleep(1.0)  # a student's run is then inside its sleeping cell
        if running & set(loopback.client.processing([victim]).get(victim, ())):
            break
    loopback.workers[victim].send_signal(signal.SIGKILL)
    loopback.workers[victim].wait()
    killed.set()


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_nothing_and_records_nothing_twice(
    loopback: LoopbackCluster, own_course: Config, tmp_path: Path
) -> None:
    folder, db = tmp_path / "class", str(tmp_path / "gradebook.db")
    for student in range(3):
        submission(folder / f"s{student}", SLOW_RIGHT)
    victim = sorted(loopback.workers)[0]
    killed = threading.Event()
    killer = threading.Thread(target=_kill_mid_run, args=(loopback, victim, killed))
    killer.start()
    grade = ["--course", str(own_course.root), "grade", str(folder), "--db", db]
    try:
        assert main([*grade, "--cluster", loopback.address]) == 0
    finally:
        killer.join(timeout=60)
    assert killed.is_set(), "the worker was killed while the batch was running"
    assert {student: score for student, (score, _) in scores(db).items()} == {
        f"s{student}": 2.0 for student in range(3)
    }
    assert run_count(db) == 3, "every submission recorded once"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_cluster_that_cannot_be_reached_is_one_line_and_exit_2(
    mini_course: Config,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 0.5)
    folder = tmp_path / "class"
    submission(folder / "right", RIGHT)
    address = f"tcp://127.0.0.1:{_closed_port()}"
    command = [
        "--course",
        str(mini_course.root),
        "grade",
        str(folder),
        "--db",
        str(tmp_path / "g.db"),
    ]
    assert main([*command, "--cluster", address]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"grader: error: cannot reach the Dask scheduler at {address}")


@pytest.mark.parametrize(
    ("answers", "problem"),
    [
        ({"tcp://a:1": "0.1.0", "tcp://b:1": "0.1.0"}, ""),
        (
            {"tcp://a:1": "0.1.0", "tcp://b:1": ModuleNotFoundError("No package metadata")},
            "worker tcp://b:1 has no autodiff-grader (No package metadata); install the same "
            "autodiff-grader 0.1.0 as here on every worker",
        ),
        (
            {"tcp://a:1": "0.0.9"},
            "worker tcp://a:1 has autodiff-grader 0.0.9, this grader 0.1.0; install the same "
            "version on every worker",
        ),
    ],
)
def test_workers_without_this_grader_are_named(answers: dict[str, object], problem: str) -> None:
    assert cluster.software_problem("autodiff-grader", "0.1.0", answers) == problem


def test_workers_and_a_cluster_together_are_refused(
    mini_course: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "class"
    submission(folder / "right", RIGHT)
    command = ["--course", str(mini_course.root), "grade", str(folder), "--db", str(tmp_path / "g")]
    assert main([*command, "--workers", "2", "--cluster", "tcp://127.0.0.1:1"]) == 2
    assert "--workers is for grading on this machine" in capsys.readouterr().err
