#!/usr/bin/env python3
"""The cost of the runner's own steps as a build grows (issue 17, item 19).

    python3 benches/workspace.py [--bin target/release/orchestrator] [--prompts 10000] [--files 60000]

1. Per-prompt cost along a long run: `run --mock --json` of N generated prompts
   (benches/gen_prompts.py); each `completed` event is timestamped as it arrives, and the
   time of the first 1,000 completions is compared with the time of the last 1,000. A
   runner whose per-prompt work grows with the session (a scan of the plan per prompt)
   shows it as a ratio above 1.
2. A restore in a large tree: an agent build whose workspace holds F committed files; its
   one prompt changes one file and fails its check once, so the run records what the
   attempt left (a snapshot) and restores the workspace before the retry. The run's time is
   compared with the same run on a tree of 100 files: the snapshots are incremental (a
   private index kept between them), so the difference is git's walk of the tree, not a
   rehash of every file.

Prints a table; needs git, python3, and the binary (built with `cargo build --profile dist`).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def long_run(binary, n, tmp):
    build = Path(tmp) / f"long-{n}"
    subprocess.run([sys.executable, str(ROOT / "benches" / "gen_prompts.py"), str(n), str(build)],
                   check=True, stderr=subprocess.DEVNULL)
    proc = subprocess.Popen([binary, "--json", "run", "--mock"], cwd=build,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    stamps = []
    for line in proc.stdout:
        if '"event":"completed"' in line.replace(" ", ""):
            stamps.append(time.perf_counter())
    if proc.wait() != 0 or len(stamps) != n:
        sys.exit(f"the {n}-prompt mock run failed ({len(stamps)} completed)")
    first = stamps[999] - stamps[0]
    last = stamps[-1] - stamps[-1000]
    return first, last


AGENT = """#!/bin/sh
echo changed >> f/00/file-0.txt
cat "$T/reply.json"
"""

REPLY = {
    "type": "result", "subtype": "success", "is_error": False,
    "result": "Done.\n\n```json\n" + json.dumps({"prompt": "01.1-change", "success": True, "outputs": {}}) + "\n```\n",
    "usage": {"input_tokens": 1, "output_tokens": 1},
}

PROMPT = """# 01.1-change

Change one file.

## Validation
```bash
test -e "STATE/second" || { touch "STATE/second"; false; }
```

## Checkpoint
```json
{"prompt": "01.1-change", "success": true, "outputs": {}}
```
"""


def restore_run(binary, files, tmp):
    build = Path(tmp) / f"tree-{files}"
    ws = build / "build"
    for i in range(files):
        d = ws / "f" / f"{i // 1000:02d}"
        if i % 1000 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"file-{i}.txt").write_text(f"file {i}\n")
    (build / "prompts" / "01-a").mkdir(parents=True)
    (build / "prompts" / "01-a" / "01.1-change.md").write_text(PROMPT.replace("STATE", str(build / "state")))
    agent = build / "agent.sh"
    agent.write_text(AGENT)
    agent.chmod(0o755)
    state = build / "state"
    state.mkdir()
    (state / "reply.json").write_text(json.dumps(REPLY))
    (build / "config.toml").write_text(
        '[llm]\nprovider = "command"\ncommand = ["./agent.sh"]\nenv = ["T"]\n'
        '[retry]\ninitial_delay = "1ms"\nmax_delay = "1ms"\n'
        '[workspace]\ndir = "build"\n[verify]\nfrom_prompt = true\n')
    env = dict(os.environ, T=str(state))
    # The baseline takes the tree in (timed apart: a first snapshot hashes every file).
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    start = time.perf_counter()
    out = subprocess.run([binary, "run", "--allow-dirty"], cwd=build, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"the {files}-file run failed: {out.stderr}")
    return elapsed


def timed_restore(binary, files, tmp):
    """The run of one failed and one accepted attempt on a tree that is already committed:
    a first run takes the tree into the baseline; a rerun then does the measured work."""
    build = Path(tmp) / f"tree-{files}"
    restore_run(binary, files, tmp)
    state = build / "state"
    (state / "second").unlink()
    env = dict(os.environ, T=str(state))
    start = time.perf_counter()
    out = subprocess.run([binary, "rerun", "01.1"], cwd=build, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"the {files}-file rerun failed: {out.stderr}")
    shutil.rmtree(build, ignore_errors=True)
    return elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "target" / "dist" / "orchestrator"))
    ap.add_argument("--prompts", type=int, default=10000)
    ap.add_argument("--files", type=int, default=60000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="orch-ws-bench-")
    try:
        first, last = long_run(args.bin, args.prompts, tmp)
        small = timed_restore(args.bin, 100, tmp)
        large = timed_restore(args.bin, args.files, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"| measure | time | baseline | ratio |\n|---|---|---|---|")
    print(f"| run --mock of {args.prompts}: the last 1,000 prompts | {last:.2f} s | the first 1,000: {first:.2f} s | {last / first:.2f} |")
    print(f"| rerun with a failed check (snapshot, restore, commit), {args.files} files | {large:.2f} s | 100 files: {small:.2f} s | {large / small:.2f} |")


if __name__ == "__main__":
    main()
