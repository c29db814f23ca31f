#!/usr/bin/env bash
# Builds a Python processor into a WebAssembly component for Roost.
#   plugins-wasm/python/build.sh my_processor.py my_processor.wasm
# Needs componentize-py (`pip install componentize-py`). The module defines `process(message)` and,
# optionally, `init(config)`; see plugins-wasm/python/sdk/roost.py and docs/processors.md.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 SOURCE.py OUT.wasm" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
src=$1 out=$2
[ -f "$src" ] || { echo "$src: no such file" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$src" "$work/user_processor.py"
# --stub-wasi: the component imports nothing from WASI (no files, sockets or clocks); Roost
# refuses modules that do.
componentize-py -d "$here/../wit" -w processor componentize roost_app \
    -p "$work" -p "$here/sdk" --stub-wasi -o "$out"
