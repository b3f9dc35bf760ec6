#!/usr/bin/env bash
# Install featbench offline on a machine that has torch, torchvision, timm, numpy, scipy, scikit-learn,
# pluggy, attrs, pyyaml, tabulate, tqdm and pytest but no network, from this checkout and the wheels in
# .whl/ (see benchmarks/README.md, "GPU check", for the `pip download` commands that fill it).
#
#   bash benchmarks/gpu_setup.sh [SITE]      # SITE defaults to /tmp/featbench-site
#   PYTHONPATH=SITE python3 benchmarks/gpu_check.py ...
#
# Everything goes into SITE (nothing into the system's site-packages, so no root and no PEP 668 refusal):
# the wheels of .whl/ except setuptools, unpacked without dependencies; then featbench itself, built from
# this checkout in an isolated build environment whose setuptools (>= 77, for the SPDX license string)
# comes from .whl/, whatever setuptools the machine has. Without pip, wheels are unpacked with zipfile and
# featbench is laid out by hand (its package-dir mapping: core/ -> featbench, plugins/ -> featbench.plugins).
# Ends by importing featbench from SITE and listing its plugins.
set -euo pipefail
cd "$(dirname "$0")/.."
SITE=${1:-/tmp/featbench-site}
PY=${PYTHON:-python3}
mkdir -p "$SITE"
shopt -s nullglob
runtime=()
for w in .whl/*.whl; do
  case "$(basename "$w")" in setuptools-*) ;; *) runtime+=("$w") ;; esac
done
have_pip=0
if [ -z "${FEATBENCH_SETUP_NO_PIP:-}" ] && "$PY" -m pip --version >/dev/null 2>&1; then have_pip=1; fi
if [ "$have_pip" = 1 ]; then
  if [ ${#runtime[@]} -gt 0 ]; then
    "$PY" -m pip install --quiet --no-index --no-deps --target "$SITE" --upgrade "${runtime[@]}"
  fi
  # built from a clean copy of the sources: a build/ folder left in the checkout could add stale modules
  src=$(mktemp -d)
  trap 'rm -rf "$src"' EXIT
  cp -r pyproject.toml README.md registry.yaml core plugins "$src"/  # core/registry.yaml links to ../registry.yaml
  cp LICEN[CS]E* "$src"/ 2>/dev/null || true
  build_req=(.whl/setuptools-*.whl)  # empty without the wheel (nullglob)
  if [ ${#build_req[@]} -gt 0 ]; then
    # isolated build: pip installs the build requirement (setuptools) from .whl/ into a throw-away env
    "$PY" -m pip install --quiet --no-index --find-links "$PWD/.whl" --no-deps --target "$SITE" --upgrade "$src"
  else
    "$PY" -m pip install --quiet --no-index --no-build-isolation --no-deps --target "$SITE" --upgrade "$src"
  fi
else
  echo "gpu_setup: no pip for $PY: unpacking the wheels and laying featbench out by hand" >&2
  "$PY" - "$SITE" "${runtime[@]}" <<'EOF'
import os, shutil, sys, tomllib, zipfile

site, wheels = sys.argv[1], sys.argv[2:]
for w in wheels:
    zipfile.ZipFile(w).extractall(site)
for name in os.listdir(site):
    if name == "featbench" or (name.startswith("featbench-") and name.endswith(".dist-info")):
        shutil.rmtree(os.path.join(site, name))
ignore = shutil.ignore_patterns("__pycache__")
shutil.copytree("core", os.path.join(site, "featbench"), ignore=ignore)
shutil.copytree("plugins", os.path.join(site, "featbench", "plugins"), ignore=ignore)
with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
info = os.path.join(site, f"featbench-{project['version']}.dist-info")
os.makedirs(info)
with open(os.path.join(info, "METADATA"), "w") as f:
    f.write(f"Metadata-Version: 2.1\nName: featbench\nVersion: {project['version']}\n")
with open(os.path.join(info, "entry_points.txt"), "w") as f:
    f.write("[console_scripts]\nfeatbench = featbench.cli:main\n")
EOF
fi
PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" FEATBENCH_DISABLE_ENTRY_POINTS=1 "$PY" -c "
import featbench, os, sys
where = os.path.dirname(featbench.__file__)
assert where.startswith(os.path.abspath(sys.argv[1])), f'featbench imported from {where}, not from the site'
print('gpu_setup: featbench', featbench.__version__, 'from', where)
" "$SITE"
PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m featbench plugins
