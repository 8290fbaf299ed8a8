"""How kernels can be confined on this machine, checked once per grader process.

Forked from a warm zygote (`grader.engine.zygote_loop`) where that works (as root, on Linux 5.12
or later), in bubblewrap otherwise. Without either, the limits still apply and the kernel gets a
clean environment and a temporary working directory.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Isolation:
    """How kernels are confined on this machine, as recorded in the results."""

    sandboxed: bool
    description: str
    forked: bool = False  # kernels are forked from a zygote, which sandboxes them itself


ZYGOTE = (
    "forked from a warm zygote into new namespaces: no network, read-only system, private "
    "working directory, an unprivileged uid of its own, no capabilities"
)


@functools.cache
def detect_isolation() -> Isolation:
    """How kernels can be confined here (checked once per grader process).

    Forked from a zygote where its probe passes, in bubblewrap where that runs, limits only
    otherwise; the description says why a stronger way was not taken.
    """
    problem = _zygote_problem()
    if problem is None:
        return Isolation(True, ZYGOTE, forked=True)
    fallback = _detect_bubblewrap()
    if fallback.sandboxed:
        return Isolation(True, f"{fallback.description} (no zygote: {problem})")
    if os.geteuid() == 0:
        uid = "an unprivileged uid of its own" if can_drop_root() else "root (no setpriv)"
        return Isolation(False, f"{fallback.description}; each kernel runs as {uid}")
    return fallback


@functools.cache
def can_drop_root() -> bool:
    """Whether a kernel can be started under another uid here (the grader is root)."""
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


def _zygote_problem() -> str | None:
    """Why the zygote cannot confine kernels here, or None when its probe passes."""
    probe = [sys.executable, "-m", "grader.engine.zygote_loop", "--probe"]
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    if result.returncode == 0:
        return None
    lines = (result.stdout + result.stderr).strip().splitlines()
    return lines[-1] if lines else f"its probe exited with status {result.returncode}"


def _detect_bubblewrap() -> Isolation:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Isolation(False, "not sandboxed: bubblewrap (bwrap) is not installed")
    probe = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"]
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return Isolation(False, f"not sandboxed: bubblewrap does not run here ({error})")
    if result.returncode != 0:
        reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no reason"
        return Isolation(False, f"not sandboxed: bubblewrap does not run here ({reason})")
    return Isolation(True, "bubblewrap: no network, read-only system, private working directory")
