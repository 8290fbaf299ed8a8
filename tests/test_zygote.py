from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from jupyter_core.utils import ensure_event_loop

from grader import extract
from grader.engine import isolation as engine_isolation
from grader.engine.isolation import detect_isolation
from grader.engine.jail import bubblewrap_argv
from grader.engine.policy import kernel_view
from grader.engine.runs import remove_tree, run_directory
from grader.execute import ExecutedNotebook, Limits, run_notebook
from grader.extract import PRELOADED_PROBE, probe_sources, values_request
from grader.pool import KernelPool, WarmKernel, discard
from tests.conftest import ROOT, make_cell, make_notebook
from tests.test_extract import FAKE_PROBE, TRUE_PAYLOAD
from tests.test_policy import PROC_KNOBS_READ_ONLY, bubblewrap, view_report

forked = pytest.mark.skipif(
    not detect_isolation().forked, reason="kernels cannot be forked from a zygote here"
)


def test_without_a_zygote_the_isolation_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_isolation, "_zygote_problem", lambda: "no mount_setattr here")
    engine_isolation.detect_isolation.cache_clear()
    try:
        isolation = engine_isolation.detect_isolation()
    finally:
        engine_isolation.detect_isolation.cache_clear()
    assert not isolation.forked
    assert "no mount_setattr here" in isolation.description or not isolation.sandboxed


@pytest.fixture(scope="module")
def pool() -> Iterator[KernelPool]:
    with KernelPool(Limits().resources, threads=1) as kernels:
        yield kernels


class _Given:
    """Stands in for a pool: hands out one given kernel."""

    def __init__(self, kernel: WarmKernel) -> None:
        self.kernel = kernel

    def take(self) -> WarmKernel:
        return self.kernel

    def discard(self, kernel: WarmKernel) -> None:
        discard(kernel)


def run_cells(cells: list[str], kernels: KernelPool | _Given) -> ExecutedNotebook:
    nb = make_notebook([make_cell(source, f"cell{i}") for i, source in enumerate(cells)])
    return run_notebook(nb, [], Limits(cell_timeout=30), kernels)  # type: ignore[arg-type]


def failures(executed: ExecutedNotebook) -> list[str]:
    return [f"{c.grade_id}: {c.ename}: {c.evalue}" for c in executed.cells if c.status != "ok"]


CONFINED = [
    # nothing of the course, of other runs or of the grader in its file system
    f"import os\nassert not os.path.exists({str(ROOT / 'solutions')!r})",
    f"assert not os.path.exists({str(ROOT / 'grader')!r})",
    "assert sorted(os.listdir('/dev/shm')) == [os.path.basename(os.getcwd())]",
    # its own PID namespace: its init and itself
    "pids = sorted(p for p in os.listdir('/proc') if p.isdigit())\n"
    "assert pids == ['1', '2'] and os.getpid() == 2",
    # no network
    "import socket\nassert socket.if_nameindex() == [(1, 'lo')]",
    "try:\n    socket.create_connection(('192.0.2.1', 80), timeout=2)\nexcept OSError:\n    pass\n"
    "else:\n    raise AssertionError('reached the network')",
    # a read-only system, Python installation and sysctls; a writable private directory
    "import sys\nfor path in (sys.prefix, '/usr', '/', '/proc/sys/vm'):\n"
    "    assert not os.access(path, os.W_OK), path",
    "sysctl = '/proc/sys/vm/swappiness'\nvalue = open(sysctl).read()  # written back as it was\n"
    "try:\n    open(sysctl, 'w').write(value)\nexcept OSError:\n    pass\n"
    "else:\n    raise AssertionError('wrote a sysctl')",
    "open('written', 'w').write('ok')",
    PROC_KNOBS_READ_ONLY,
    # no privilege, and no way to gain one
    "lines = open('/proc/self/status').read().splitlines()\n"
    "status = dict(line.split(':\\t', 1) for line in lines)\n"
    "assert all(int(status[f'Cap{s}'], 16) == 0 for s in ('Inh', 'Prm', 'Eff', 'Bnd', 'Amb'))\n"
    "assert status['NoNewPrivs'] == '1' and os.getuid() >= 2**30 and os.getgroups() == []",
]


@pytest.mark.slow
@forked
def test_a_forked_kernel_is_confined(pool: KernelPool) -> None:
    assert failures(run_cells(CONFINED, pool)) == []


@pytest.mark.slow
@forked
def test_probes_run_the_zygotes_code_unless_the_notebook_replaced_it(pool: KernelPool) -> None:
    # The zygote's code alone can answer a probe whose own source is broken; code the notebook
    # put in its place is not run.
    (probe,) = probe_sources([values_request(["x"])])
    broken = probe.replace(repr(extract._packed_source()), repr("not a source"))
    replace = f"import builtins\nbuiltins.{PRELOADED_PROBE} = compile({FAKE_PROBE!r}, 'p', 'exec')"
    for cells, cell in ((["x = 3"], broken), (["x = 3", replace], probe)):
        nb = make_notebook([make_cell(source, f"cell{i}") for i, source in enumerate(cells)])
        executed = run_notebook(nb, [cell], Limits(cell_timeout=30), pool)
        assert failures(executed) == [], cell
        (outcome,) = executed.probes
        assert outcome.payload is not None and json.loads(outcome.payload) == TRUE_PAYLOAD


@pytest.mark.slow
@forked
@bubblewrap
def test_a_forked_kernel_sees_what_a_kernel_in_bubblewrap_sees(pool: KernelPool) -> None:
    directory = run_directory("view")  # where runs are, as the kernel's own
    try:
        view = kernel_view(directory)
        command = [*bubblewrap_argv(view), sys.executable, "-c"]
        report = view_report(view) + "import json\nprint(json.dumps(seen))"
        shown = subprocess.run(
            [*command, report], capture_output=True, text=True, timeout=60, check=True
        )
    finally:
        remove_tree(directory)
    expected = json.loads(shown.stdout)
    assert expected["/proc/sys"] == "read-only directory" and expected["/"].startswith("read-only")
    differences = f"{{k: v for k, v in seen.items() if v != {expected!r}.get(k)}}"
    cell = view_report(view) + f"assert seen == {expected!r}, {differences}"
    assert failures(run_cells([cell], pool)) == []


@pytest.mark.slow
@forked
def test_a_kernel_cannot_reach_the_zygote(pool: KernelPool) -> None:
    pool.prime()
    zygote = pool._zygote
    assert zygote is not None
    pid = zygote.process.pid
    cells = [
        f"import os\ntry:\n    open('/proc/{pid}/mem', 'rb')\nexcept FileNotFoundError:\n"
        "    pass\nelse:\n    raise AssertionError('opened the zygote memory')",
        f"try:\n    os.kill({pid}, 0)\nexcept ProcessLookupError:\n    pass\n"
        "else:\n    raise AssertionError('the zygote can be signalled')",
        f"assert not os.path.exists({str(zygote.directory)!r})",
    ]
    assert failures(run_cells(cells, pool)) == []
    tasks = os.listdir(f"/proc/{pid}/task")
    files = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    assert len(tasks) == 1 and not [f for f in files if f.startswith("socket:")], (tasks, files)


@pytest.mark.slow
@forked
def test_a_kernel_cannot_reach_another_kernel(pool: KernelPool) -> None:
    mine, other = pool.take(), pool.take()
    try:
        other_pid = other.manager.provisioner.pid
        cells = [
            f"import os\ntry:\n    os.kill({other_pid}, 0)\nexcept ProcessLookupError:\n"
            "    pass\nelse:\n    raise AssertionError('another kernel can be signalled')",
            "raise RuntimeError(os.getuid())",
        ]
        signal, uid = run_cells(cells, _Given(mine)).cells
        assert signal.status == "ok", signal
        other_uid = run_cells(["import os\nraise RuntimeError(os.getuid())"], _Given(other))
        assert uid.ename == "RuntimeError" and other_uid.cells[0].evalue != uid.evalue
    finally:
        discard(other)


@pytest.mark.slow
@forked
def test_no_secret_of_the_grader_reaches_a_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADER_HIDDEN_SEED", "12345")
    cells = [
        "import os\nassert 'GRADER_HIDDEN_SEED' not in os.environ",
        "assert b'GRADER_HIDDEN_SEED' not in open('/proc/self/environ', 'rb').read()",
        "import sys\nassert not [m for m in sys.modules if m.startswith('grader')]",
    ]
    with KernelPool(Limits().resources) as fresh:
        assert failures(run_cells(cells, fresh)) == []


@pytest.mark.slow
@forked
def test_closing_the_pool_ends_the_zygote_and_its_kernels() -> None:
    kernels = KernelPool(Limits().resources)
    taken = kernels.take()  # and one more warming, never used
    zygote = kernels._zygote
    assert zygote is not None
    kernels.close()
    try:
        assert zygote.process.poll() is not None and not zygote.directory.exists()
        assert taken.manager.provisioner.pidfd is not None
        assert select.select([taken.manager.provisioner.pidfd], [], [], 5)[0], "outlived it"
    finally:
        discard(taken)


@pytest.mark.slow
@forked
def test_processes_that_leave_the_session_stay_in_the_run_cpu_group(pool: KernelPool) -> None:
    # Each process that calls setsid() would get a fair share of the CPU of its own: in one
    # group, however many there are, they share the run's.
    if not Path("/sys/fs/cgroup/cpu").is_dir():
        pytest.skip("no cgroup cpu controller here: a run's CPU share cannot be enforced")
    kernel = pool.take()
    (group,) = [g for g in kernel.jail.cgroups if g.parent.parent.name == "cpu"]
    cells = [
        "import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n        os.setsid()\n"
        "        open(f'left{os.getpid()}', 'w').close()\n        time.sleep(1000)\ntime.sleep(3)"
    ]

    def run() -> ExecutedNotebook:
        try:
            return run_cells(cells, _Given(kernel))
        finally:
            ensure_event_loop().close()  # the loop jupyter_client made for this thread

    with ThreadPoolExecutor(1) as background:
        running = background.submit(run)
        deadline = time.monotonic() + 20
        while len(list(kernel.jail.directory.glob("left*"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        members = [int(pid) for pid in (group / "cgroup.procs").read_text().split()]
        sessions = {int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
                    for pid in members}  # fmt: skip
        assert failures(running.result()) == []
    # The sandbox's outer process, its init, the kernel and the three that left its session.
    assert len(members) == 6 and len(sessions) == 4, (members, sessions)
