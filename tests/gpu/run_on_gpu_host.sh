#!/usr/bin/env bash
# What the kit checks on a real GPU host (the CI machines have none). Used with the device tool:
# carries .whl (ansible-core and its needs for the host's Python) and writes logs to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/gik-gpu-out}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:.
  export PATH=/tmp/site/bin:$PATH
fi
export PYTHONPATH=${PYTHONPATH:-.}
{ nvidia-smi; nvidia-smi -L; } >"$OUT/nvidia-smi.txt" 2>&1
python3 tests/gpu/gpu_checks.py 2>&1 | tee "$OUT/gpu_checks.log"
rc1=${PIPESTATUS[0]}
ANSIBLE_ROLES_PATH=roles ANSIBLE_NOCOLOR=1 python3 -m ansible.cli.playbook -i localhost, -c local \
  -e ansible_python_interpreter="$(command -v python3)" tests/gpu/nvidia_verify.yml 2>&1 | tee "$OUT/ansible.log"
rc2=${PIPESTATUS[0]}
echo "gpu_checks rc=$rc1 ansible rc=$rc2"
exit $(( rc1 || rc2 ))
