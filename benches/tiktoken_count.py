#!/usr/bin/env python3
"""Count the tokens of every *.md prompt under DIR with Python tiktoken.

The Python contender for `orchestrator estimate` in the benchmarks: the whole
process (interpreter start, import, encoding load, counting) is what is timed.

    eval "$(benches/tiktoken_offline.sh)"     # offline encoding cache
    python3 benches/tiktoken_count.py prompts [--encoding cl100k_base]
"""

import argparse
from pathlib import Path

import tiktoken


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="directory to walk for *.md files")
    parser.add_argument("--encoding", default="cl100k_base", help="tiktoken encoding name")
    args = parser.parse_args()

    enc = tiktoken.get_encoding(args.encoding)

    total = 0
    files = sorted(args.dir.rglob("*.md"))
    for path in files:
        # newline="" keeps CRLF as is: count the bytes on disk, as the API would see them
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
        n = len(enc.encode_ordinary(text))
        total += n
        print(f"{n:>8}  {path.relative_to(args.dir).as_posix()}")
    print(f"{total:>8}  total ({len(files)} files, {args.encoding})")


if __name__ == "__main__":
    main()
