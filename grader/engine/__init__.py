"""The engine room: how a student's kernel is started, confined and cleaned up after.

Split by the process each part runs in:

- the grader's side: `isolation` (how kernels can be confined here), `jail` (one run's
  directory, cgroups and, without a zygote, its launch command), `limits` (rlimits and
  cgroups), `runs` (run directories and their removal), `client` (asks the zygote for kernels);
- the zygote's own loop: `zygote_loop` (`python -m grader.engine.zygote_loop`), which imports
  torch once and forks every kernel;
- the forked sandbox: `sandboxed` (namespaces, a new root, no privilege, then the kernel),
  over the system calls of `linux`;
- shared by all of them: `policy` (what a kernel may see) and `job` (what the grader asks the
  zygote for).
"""
