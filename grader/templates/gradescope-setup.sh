#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder's image (Ubuntu): it
# installs the grader this zip was built with, pinned to the versions its reference results
# were computed with (torch's CPU build), then checks how kernels will be confined here.
# With GRADER_AUTOGRADER_PYTHON set, that Python is used as it is and nothing is installed.
set -euo pipefail
source_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${GRADER_AUTOGRADER_PYTHON:-}"
if [ -z "$python" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    # util-linux: setpriv, which starts each kernel under an unprivileged uid of its own
    apt-get install -y --no-install-recommends python3 python3-venv python3-pip util-linux
    python3 -m venv /opt/autodiff-grader
    python=/opt/autodiff-grader/bin/python
    torch="$(grep '^torch==' "$source_dir/requirements.txt")"
    "$python" -m pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "$torch"
    "$python" -m pip install --no-cache-dir -r "$source_dir/requirements.txt" "$source_dir"/wheels/*.whl
fi
# Fails the image's build (not every student's run) when the install is broken or kernels
# would run as root; prints how kernels are confined in this container.
"$python" -I -m grader.gradescope --self-check
