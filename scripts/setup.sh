# Sourced by scripts/demo and scripts/test: installs what the build needs from the system when
# it is missing, using the system's package manager (Debian's apt-get). protoc needs nothing:
# the build uses the one vendored in the protoc-bin-vendored crate.

apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo="sudo"
    else
      echo "setup: need to install $*, but not root and no sudo; install them and retry" >&2
      exit 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: need $*, and there is no apt-get here; install them and retry" >&2
    exit 1
  fi
  echo "setup: installing $*" >&2
  if [ -z "${DOM_ROUTER_APT_UPDATED:-}" ]; then
    $sudo apt-get update -qq >/dev/null
    DOM_ROUTER_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# need COMMAND PACKAGE: installs PACKAGE unless COMMAND is on the PATH.
need() {
  command -v "$1" >/dev/null 2>&1 || apt_install "$2"
}

# ensure_build_deps [highs]: a Rust toolchain and a C compiler (ring and a few others build C).
# With `highs`, for a build with the cargo feature `highs`, also what HiGHS (the MIP solver
# behind good_lp's `highs` backend) builds from source with: a C++ compiler and cmake, and
# libclang to generate its bindings. A build without the feature needs none of them.
ensure_build_deps() {
  if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
      export PATH="$HOME/.cargo/bin:$PATH"
    else
      echo "setup: no Rust toolchain; install one with rustup (https://rustup.rs) and retry" >&2
      exit 1
    fi
  fi
  need cc gcc
  case "${1:-}" in
    "") return ;;
    highs) ;;
    *)
      echo "setup: ensure_build_deps takes nothing or \"highs\", not \"$1\"" >&2
      exit 1
      ;;
  esac
  need c++ g++
  need cmake cmake
  if ! ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/*/libclang-[0-9]*.so* >/dev/null 2>&1; then
    apt_install libclang-dev
  fi
}

# The Redis tests start their own redis-server processes (and a Redis Cluster of them, made with
# redis-cli), on free loopback ports.
ensure_test_deps() {
  need redis-server redis-server
  need redis-cli redis-tools
}

# The chart test (tests/helm_chart.rs) renders helm/dom-router with Helm's own engine, loaded as
# a Python library, and validates the manifests against the Kubernetes API schemas; both come
# from PyPI, pinned in helm/dom-router/tests/requirements.txt, into a virtualenv of their own
# under the target directory. Exports DOM_ROUTER_CHART_PYTHON, the virtualenv's python.
ensure_chart_deps() {
  local requirements=helm/dom-router/tests/requirements.txt
  local venv="${CARGO_TARGET_DIR:-target}/chart-venv"
  case "$venv" in /*) ;; *) venv="$PWD/$venv" ;; esac
  if ! command -v python3 >/dev/null 2>&1; then
    apt_install python3 python3-venv
  fi
  # tomllib, which the check reads server.toml with, came in Python 3.11
  if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup: the chart test needs Python 3.11 or later; python3 is $(python3 --version 2>&1)" >&2
    exit 1
  fi
  if [ -x "$venv/bin/python" ] && cmp -s "$requirements" "$venv/requirements.txt" &&
    "$venv/bin/python" -c 'import helm_python, kubernetes_validate, yaml' 2>/dev/null; then
    export DOM_ROUTER_CHART_PYTHON="$venv/bin/python"
    return
  fi
  # Debian splits venv's pip bootstrap out of python3
  python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
  echo "setup: installing the chart test's Python packages into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
  export DOM_ROUTER_CHART_PYTHON="$venv/bin/python"
}
