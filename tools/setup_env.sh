#!/usr/bin/env bash
# Creates or brings up to date the project's virtual environment, from nothing if need be:
#   1. .venv with every pinned requirement (requirements.txt) and an editable install of
#      mmsag_ros (which gives the `mmsag` command),
#   2. the ROS 2 wheels' CMake files patched to this machine's Python (tools/fix_ros_cmake_paths.py),
#   3. this package's messages (msg/*.msg) generated and installed into .venv.
# Each step runs only when its inputs changed since it last succeeded, so a second run on a ready
# environment does nothing and takes well under a second. Delete .venv to start over.
#
# Environment: MMSAG_VENV (default: <repo>/.venv), PYTHON (default: python3).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${MMSAG_VENV:-$root/.venv}
python=${PYTHON:-python3}
stamps=$venv/.mmsag-setup
build_dir=$root/build/venv
cd "$root"

say() { printf '[setup] %s\n' "$*"; }
fingerprint() { cat "$@" | sha256sum | cut -d' ' -f1; }
up_to_date() { [ -f "$stamps/$1" ] && [ "$(cat "$stamps/$1")" = "$2" ]; }
mark_done() { mkdir -p "$stamps" && printf '%s\n' "$2" > "$stamps/$1"; }

if [ ! -x "$venv/bin/python" ]; then
  say "creating virtual environment $venv"
  "$python" -m venv "$venv"
fi

packages_fp=$(fingerprint requirements.txt setup.py tools/fix_ros_cmake_paths.py)
if up_to_date packages "$packages_fp"; then
  say "python packages: up to date"
else
  say "python packages: installing requirements.txt (a new venv: about 2 minutes, 6 GB)"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -r requirements.txt
  say "python packages: editable install of mmsag_ros (distribution 'mmsag')"
  "$venv/bin/python" -m pip install --quiet --no-deps --editable .
  "$venv/bin/python" tools/fix_ros_cmake_paths.py "$venv"
  mark_done packages "$packages_fp"
fi

messages_fp=$(fingerprint "$stamps/packages" CMakeLists.txt package.xml msg/*.msg mmsag_ros/__init__.py)
if up_to_date messages "$messages_fp"; then
  say "messages: up to date"
else
  say "messages: generating msg/*.msg into $venv"
  log=$build_dir.log
  mkdir -p "$(dirname "$build_dir")"
  rm -rf "$build_dir"
  if ! (
    export AMENT_PREFIX_PATH=$venv CMAKE_PREFIX_PATH=$venv PATH=$venv/bin:$PATH
    cmake -S . -B "$build_dir" -DCMAKE_INSTALL_PREFIX="$venv" \
      -DPython3_EXECUTABLE="$venv/bin/python" -DMMSAG_INSTALL_PYTHON_SOURCES=OFF \
      -DBUILD_TESTING=OFF
    cmake --build "$build_dir" --parallel "$(nproc)"
    cmake --install "$build_dir"
  ) > "$log" 2>&1; then
    tail -n 30 "$log" >&2
    say "messages: build FAILED; full log in $log" >&2
    exit 1
  fi
  mark_done messages "$messages_fp"
fi

say "ready: $venv (activate with: source $venv/bin/activate)"
