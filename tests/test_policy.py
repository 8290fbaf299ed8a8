"""What a kernel sees is written once (`kernel_view`) and rendered twice: into the zygote's system
calls and into bubblewrap's arguments. Both renderings must give every path the same mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from grader.engine.isolation import _detect_bubblewrap
from grader.engine.jail import bubblewrap_argv
from grader.engine.linux import NO_DEV, READ_ONLY
from grader.engine.policy import (
    PROC_READ_ONLY,
    SYSTEM_FILES,
    SYSTEM_PATHS,
    KernelView,
    kernel_view,
)
from grader.engine.sandboxed import NEW_ROOT, OLD_ROOT, root_calls
from tests.conftest import ROOT

# How bubblewrap binds (its bind_mount): always nosuid, nodev but for --dev-bind.
BUBBLEWRAP_BINDS = {
    "--ro-bind": "read-only",
    "--ro-bind-try": "read-only, where it exists",
    "--bind": "writable",
    "--dev-bind": "writable, with devices",
}
BUBBLEWRAP_ARITY = {
    **dict.fromkeys(BUBBLEWRAP_BINDS, 2),
    "--symlink": 2,
    **dict.fromkeys(("--proc", "--tmpfs", "--dir", "--perms", "--remount-ro", "--chdir"), 1),
    **dict.fromkeys(("--hostname", "--unsetenv", "--cap-drop"), 1),
}
# Run in a sandbox: every /proc knob there is is on a read-only mount, and a file of it that its
# mode lets root write cannot be opened for writing (nothing is ever written).
PROC_KNOBS_READ_ONLY = f"""\
import os
for knob in {PROC_READ_ONLY!r}:
    path = '/proc/' + knob
    if not os.path.exists(path):
        continue
    assert os.statvfs(path).f_flag & os.ST_RDONLY, path + ' is on a writable mount'
    files = [path] if os.path.isfile(path) else [
        os.path.join(top, name) for top, _, names in os.walk(path) for name in names
    ]
    writable = [f for f in files[:500] if os.stat(f).st_mode & 0o200][:1]
    for target in writable:
        try:
            os.close(os.open(target, os.O_WRONLY))
        except OSError:
            pass
        else:
            raise AssertionError('opened ' + target + ' for writing')
"""


def view_report(view: KernelView) -> str:
    """Python that sets `seen` to what a process sees at each path of `view` but the run's."""
    paths = ["/", *(mount.target for mount in view.mounts if mount.target != view.directory)]
    return f"""\
import os
def describe(path):
    if os.path.islink(path):
        return 'symlink to ' + os.readlink(path)
    if not os.path.exists(path):
        return 'absent'
    mode = 'read-only' if os.statvfs(path).f_flag & os.ST_RDONLY else 'writable'
    return mode + (' directory' if os.path.isdir(path) else ' file')
seen = {{path: describe(path) for path in {paths!r}}}
seen['working directory'] = describe(os.getcwd())
seen['/ holds'], seen['/dev holds'] = sorted(os.listdir('/')), sorted(os.listdir('/dev'))
seen['host name'] = os.uname().nodename
"""


bubblewrap = pytest.mark.skipif(
    not _detect_bubblewrap().sandboxed, reason="bubblewrap does not run here"
)


def zygote_modes(directory: Path) -> dict[str, str]:
    """Each path of the zygote's rendering, with its mode, in words."""
    modes = {}
    for call in root_calls(kernel_view(directory)):
        path = call.target.removeprefix(NEW_ROOT)
        if call.call == "symlink":
            modes[path] = f"symlink to {call.source}"
        elif call.call == "mkdir":
            modes[path] = f"directory {call.mode:o}"
        elif call.call == "mount":
            modes[path] = f"{call.source} {call.options.removeprefix('mode=')}".strip()
        else:
            source = call.source.removeprefix(NEW_ROOT if call.optional else OLD_ROOT)
            mode = "read-only" if call.flags & READ_ONLY else "writable"
            mode += "" if call.flags & NO_DEV else ", with devices"
            modes[path] = f"{mode}{', where it exists' if call.optional else ''} bind of {source}"
    return modes


def bubblewrap_modes(argv: list[str]) -> dict[str, str]:
    """Each path of the bubblewrap rendering, with its mode, in words (as `zygote_modes`)."""
    modes, index, perms = {}, argv.index("--die-with-parent"), ""
    while index < len(argv):
        flag = argv[index]
        values = argv[index + 1 : index + 1 + BUBBLEWRAP_ARITY.get(flag, 0)]
        index += 1 + len(values)
        if flag in BUBBLEWRAP_BINDS:
            modes[values[1]] = f"{BUBBLEWRAP_BINDS[flag]} bind of {values[0]}"
        elif flag == "--symlink":
            modes[values[1]] = f"symlink to {values[0]}"
        elif flag == "--perms":
            perms = values[0]
        elif flag in ("--tmpfs", "--dir", "--proc"):
            kind = {"--tmpfs": "tmpfs", "--dir": "directory", "--proc": "proc"}[flag]
            modes[values[0]] = f"{kind} {perms}".strip()
            perms = ""
    return modes


def test_the_zygote_and_bubblewrap_render_the_same_view(tmp_path: Path) -> None:
    zygote = zygote_modes(tmp_path)
    argv = bubblewrap_argv(kernel_view(tmp_path))
    assert bubblewrap_modes(argv) == zygote
    for knob in PROC_READ_ONLY:
        assert zygote[f"/proc/{knob}"] == f"read-only, where it exists bind of /proc/{knob}"
    writable = [path for path, mode in zygote.items() if mode.startswith("writable bind")]
    assert writable == [str(tmp_path)]
    assert argv[-4:] == ["--remount-ro", "/", "--chdir", str(tmp_path)]  # the zygote's too
    assert argv[argv.index("--hostname") + 1] == kernel_view(tmp_path).hostname


def test_the_view_shows_nothing_of_the_course(tmp_path: Path) -> None:
    zygote = zygote_modes(tmp_path)
    read_only = {path for path, mode in zygote.items() if mode.startswith("read-only bind")}
    assert read_only <= {*SYSTEM_PATHS, *SYSTEM_FILES, sys.prefix, sys.base_prefix}
    for course_path in (ROOT, ROOT / "solutions", ROOT / "checks", ROOT / "exercises"):
        assert not [mode for mode in zygote.values() if mode.endswith(f" {course_path}")]
        assert str(course_path) not in zygote
    assert zygote["/tmp"] == "tmpfs 1777" and zygote["/proc"] == "proc"


@bubblewrap
def test_a_kernel_in_bubblewrap_cannot_write_the_proc_knobs(tmp_path: Path) -> None:
    command = [*bubblewrap_argv(kernel_view(tmp_path)), sys.executable, "-c"]
    result = subprocess.run(
        [*command, PROC_KNOBS_READ_ONLY], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
