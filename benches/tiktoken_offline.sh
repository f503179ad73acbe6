#!/usr/bin/env bash
# Make Python `tiktoken` work offline, using the BPE files that the Rust crate
# tiktoken-rs ships in its crate sources (cl100k_base and o200k_base).
#
# Python tiktoken looks in $TIKTOKEN_CACHE_DIR for a file named
# sha1(<download URL>).hexdigest() before it tries to download anything, and it
# checks the file's sha256 against the hash it knows. The files in tiktoken-rs
# are byte-identical to the ones OpenAI publishes, so copying them there under
# the right names is all it takes.
#
# Usage:
#   benches/tiktoken_offline.sh [CACHE_DIR]      # default: <repo>/target/tiktoken-cache
#   eval "$(benches/tiktoken_offline.sh)"         # sets TIKTOKEN_CACHE_DIR in this shell
#
# Environment: PYTHON (default python3), CARGO_HOME (default ~/.cargo).
# Only the final `export ...` line goes to stdout; progress goes to stderr.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache_dir=${1:-"$repo_root/target/tiktoken-cache"}
python=${PYTHON:-python3}
cargo_home=${CARGO_HOME:-"$HOME/.cargo"}
url_base="https://openaipublic.blob.core.windows.net/encodings"
encodings=(cl100k_base o200k_base)

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v "$python" >/dev/null 2>&1 || die "$python not found (set PYTHON=...)"
command -v sha1sum >/dev/null 2>&1 || die "sha1sum not found (coreutils)"

if ! "$python" -c 'import tiktoken' >/dev/null 2>&1; then
    log "installing tiktoken with pip ..."
    "$python" -m pip install --quiet --disable-pip-version-check tiktoken
fi

# Locate the assets of tiktoken-rs 0.12.x in the cargo registry sources
# (the last match of the glob wins if several registries or patch versions exist).
assets=""
shopt -s nullglob
for dir in "$cargo_home"/registry/src/*/tiktoken-rs-0.12.*/assets; do
    if [[ -f "$dir/cl100k_base.tiktoken" && -f "$dir/o200k_base.tiktoken" ]]; then
        assets=$dir
    fi
done
shopt -u nullglob
if [[ -z "$assets" ]]; then
    die "tiktoken-rs 0.12.x sources not found under $cargo_home/registry/src;
       run \`cargo fetch\` in $repo_root first (it downloads the crate sources)."
fi
log "using encoding files from $assets"

mkdir -p "$cache_dir"
cache_dir=$(cd "$cache_dir" && pwd)

for enc in "${encodings[@]}"; do
    url="$url_base/$enc.tiktoken"
    key=$(printf '%s' "$url" | sha1sum | cut -d' ' -f1)
    cp -f "$assets/$enc.tiktoken" "$cache_dir/$key"
    log "  $enc -> $cache_dir/$key"
done

# Verify: load both encodings with downloads disabled (read_file is what
# tiktoken calls when the cache misses or the cached file's hash is wrong).
TIKTOKEN_CACHE_DIR="$cache_dir" "$python" - "${encodings[@]}" >&2 <<'PY'
import sys

import tiktoken
import tiktoken.load


def _no_download(path):
    raise RuntimeError(f"tiktoken tried to download {path}: cache miss or hash mismatch")


tiktoken.load.read_file = _no_download
for name in sys.argv[1:]:
    enc = tiktoken.get_encoding(name)
    n = len(enc.encode_ordinary("hello offline world"))
    print(f"  ok: {name} loads offline (tiktoken {tiktoken.__version__}, n_vocab={enc.n_vocab}, sample={n} tokens)")
PY

printf 'export TIKTOKEN_CACHE_DIR=%q\n' "$cache_dir"
