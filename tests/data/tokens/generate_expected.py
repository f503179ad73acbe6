#!/usr/bin/env python3
"""Reference token counts for the Rust token counter, computed with Python tiktoken.

For every file in tests/data/tokens/corpus/ and every *.md under prompts/
(recursive), this writes the number of tokens of `enc.encode_ordinary(text)`
for cl100k_base and o200k_base, plus the file's sha256, to
tests/data/tokens/expected.json:

    {"files": [{"cl100k_base": N, "o200k_base": M, "path": "...", "sha256": "..."}, ...],
     "generated_by": "python tiktoken X.Y.Z"}

`text` is the file's bytes decoded as UTF-8 exactly: no newline translation
(CRLF and lone CR stay), and a leading BOM stays part of the text.
`encode_ordinary` treats special-token text such as <|endoftext|> as plain text.
Paths are relative to the repository root, with '/' separators, sorted.
The sha256 lets a test tell a stale expectation from a tokenizer mismatch.

How to run (from anywhere; offline works):

    benches/tiktoken_offline.sh            # pip-installs tiktoken if missing, fills
                                           # target/tiktoken-cache from tiktoken-rs'
                                           # assets, prints the export line below
    export TIKTOKEN_CACHE_DIR="$PWD/target/tiktoken-cache"
    python3 tests/data/tokens/generate_expected.py

or in one go:  eval "$(benches/tiktoken_offline.sh)" && python3 tests/data/tokens/generate_expected.py

Rerun it whenever a file in corpus/ or prompts/ changes, and commit expected.json.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import tiktoken

ENCODINGS = ("cl100k_base", "o200k_base")

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent.parent
CORPUS_DIR = HERE / "corpus"
PROMPTS_DIR = REPO_ROOT / "prompts"
OUTPUT = HERE / "expected.json"


def input_files() -> list[Path]:
    files = [p for p in CORPUS_DIR.iterdir() if p.is_file()]
    if PROMPTS_DIR.is_dir():
        files += [p for p in PROMPTS_DIR.rglob("*.md") if p.is_file()]
    return files


def main() -> int:
    encoders = {name: tiktoken.get_encoding(name) for name in ENCODINGS}
    entries = []
    for path in input_files():
        data = path.read_bytes()
        text = data.decode("utf-8")  # strict: a non-UTF-8 file is an error
        entry = {
            "path": path.relative_to(REPO_ROOT).as_posix(),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        for name, enc in encoders.items():
            entry[name] = len(enc.encode_ordinary(text))
        entries.append(entry)
    entries.sort(key=lambda e: e["path"])

    result = {
        "generated_by": f"python tiktoken {tiktoken.__version__}",
        "files": entries,
    }
    with open(OUTPUT, "w", encoding="utf-8", newline="\n") as f:
        json.dump(result, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")

    n_prompts = sum(1 for e in entries if e["path"].startswith("prompts/"))
    print(
        f"wrote {OUTPUT.relative_to(REPO_ROOT).as_posix()}: {len(entries)} files "
        f"({len(entries) - n_prompts} corpus, {n_prompts} prompts), {result['generated_by']}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
