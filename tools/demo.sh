#!/usr/bin/env bash
# The main job in one command, from a fresh clone: set up .venv (tools/setup_env.sh, first run
# only), then `mmsag demo`: synthetic conveyor data -> fine-tune mmsag_effl0_224 -> export a
# bundle -> a held-out rosbag -> a live sorter node -> labels and a report under runs/demo.
# Extra arguments go to `mmsag demo` (see `.venv/bin/mmsag demo --help`); for instance
# `tools/demo.sh --photos ../shared/data/trashnet` composes the scenes from real photos.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${MMSAG_VENV:-$root/.venv}
started=$(date +%s)
"$root/tools/setup_env.sh"
echo "setup: $(( $(date +%s) - started )) s"
cd "$root"
export AMENT_PREFIX_PATH=$venv
# The demo's node and replay stay on this machine unless the caller decided otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export FASTDDS_DEFAULT_PROFILES_FILE=${FASTDDS_DEFAULT_PROFILES_FILE:-$root/config/fastdds_shm.xml}
"$venv/bin/mmsag" demo "$@"
echo "total, setup included: $(( $(date +%s) - started )) s"
