#!/usr/bin/env bash
# The project's test command: sets up .venv on first use (tools/setup_env.sh), then runs the
# whole pytest suite in it. Extra arguments go to pytest, e.g. `tools/run_tests.sh -k bag -x`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${MMSAG_VENV:-$root/.venv}
"$root/tools/setup_env.sh"
cd "$root"
export AMENT_PREFIX_PATH=$venv ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
exec "$venv/bin/python" -m pytest "$@"
