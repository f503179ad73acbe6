#!/usr/bin/env python3
"""A scripted agent, for tests (test support, not a real agent).

It does what a prompt's `## Execute` section says, literally: it reads the prompt on stdin
(or from the file given as the last argument), runs each fenced bash/sh/shell block of the
user message's `## Execute` section with `bash -e` in its working directory, and answers in
Claude Code's `--output-format json` shape, with `modelUsage`. The checkpoint block's
outputs are the names the prompt asks for; an output's value is taken from a line
`OUTPUT name=value` that an Execute block printed, else "done".

Behaviours a test selects with the environment variable SCRIPTED_AGENT (comma-separated):
  forget-first   on a prompt's first attempt (no note from a failed one), skip the last
                 Execute block (a file the checks look for is missing) and leave a stray
                 file, forgot.txt, that the next attempt must not see
  debris-crash   on the very first call of a session (marker: $SCRIPTED_AGENT_LOG.crashed),
                 write half a file and debris, say so ($SCRIPTED_AGENT_LOG.ready), and wait
                 forever, to be killed
  no-execute     answer without running anything
  is-error=SUB   answer with is_error true and subtype SUB (exit 1, as Claude Code does)
Other environment: SCRIPTED_AGENT_LOG, a file each call appends a JSON line to (its argv,
its environment's names, the prompt it got, `git rev-parse HEAD` and the files present when
it started); SCRIPTED_AGENT_CACHE_READ, cache-read tokens to report per call (default 0);
SCRIPTED_AGENT_COST, USD to report per call (default 0.001).
"""

import json
import os
import re
import subprocess
import sys
import time

BEHAVIOURS = set(filter(None, os.environ.get("SCRIPTED_AGENT", "").split(",")))
LOG = os.environ.get("SCRIPTED_AGENT_LOG")


def shell_blocks(markdown, title):
    """The bash/sh/shell fenced blocks of the section whose heading starts with `title`."""
    blocks, in_section, level, fence, lang, body = [], False, 0, None, "", []
    for line in markdown.splitlines():
        if fence is None:
            m = re.match(r"^(#{1,6})\s+(.*)$", line)
            if m:
                heading_level, text = len(m.group(1)), m.group(2).strip().lower()
                if in_section and heading_level <= level:
                    in_section = False
                if text.startswith(title):
                    in_section, level = True, heading_level
                continue
            m = re.match(r"^(`{3,}|~{3,})\s*(\S*)", line)
            if m:
                fence, lang, body = m.group(1), m.group(2).lower(), []
            continue
        if line.strip().startswith(fence[0] * len(fence)) and line.strip().strip(fence[0]) == "":
            if in_section and lang in ("bash", "sh", "shell"):
                blocks.append("\n".join(body) + "\n")
            fence = None
            continue
        body.append(line)
    return blocks


def head():
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
        return out.stdout.strip() or None
    except OSError:
        return None


def files():
    found = []
    for root, dirs, names in os.walk("."):
        dirs[:] = [d for d in dirs if d not in (".git", "checkpoints", "prompts", "__pycache__")]
        found += [os.path.relpath(os.path.join(root, n), ".") for n in names]
    return sorted(found)


def main():
    prompt_file = sys.argv[-1] if len(sys.argv) > 1 and os.path.isfile(sys.argv[-1]) else None
    prompt = open(prompt_file).read() if prompt_file else sys.stdin.read()
    system, _, user = prompt.partition("\n\n---\n\n")
    name = next((l[len("Prompt: "):].strip() for l in system.splitlines() if l.startswith("Prompt: ")), "?")
    wanted = []
    for line in system.splitlines():
        if '"outputs": {' in line:
            try:
                wanted = list(json.loads(line.strip())["outputs"].keys())
            except (ValueError, KeyError):
                pass
    retry = "previous attempt at this prompt" in user
    if LOG:
        with open(LOG, "a") as log:
            log.write(json.dumps({"argv": sys.argv, "env": sorted(os.environ), "prompt": name,
                                  "stdin": prompt, "head": head(), "files": files(), "cwd": os.getcwd(),
                                  "retry": retry}) + "\n")
    if "debris-crash" in BEHAVIOURS and LOG and not os.path.exists(LOG + ".crashed"):
        open(LOG + ".crashed", "w").close()
        with open("half-written.py", "w") as f:
            f.write("def half(:\n    # the agent was killed while writing this")
        open("debris.txt", "w").write("debris")
        open(LOG + ".ready", "w").write(str(os.getpid()))
        while True:
            time.sleep(60)
    for behaviour in BEHAVIOURS:
        if behaviour.startswith("is-error="):
            subtype = behaviour.split("=", 1)[1]
            print(json.dumps({"type": "result", "subtype": subtype, "is_error": True,
                              "errors": [f"scripted {subtype}"], "total_cost_usd": 0.001,
                              "modelUsage": {"scripted": {"inputTokens": 10, "outputTokens": 5,
                                                          "costUSD": 0.001}}}))
            sys.exit(1)
    outputs = {}
    if "no-execute" not in BEHAVIOURS:
        blocks = shell_blocks(user, "execute")
        if "forget-first" in BEHAVIOURS and not retry and blocks:
            blocks = blocks[:-1]
            open("forgot.txt", "w").write("left by a failed attempt")
        for block in blocks:
            ran = subprocess.run(["bash", "-e", "-c", block], capture_output=True, text=True)
            sys.stderr.write(ran.stderr)
            for line in ran.stdout.splitlines():
                m = re.match(r"^OUTPUT (\w+)=(.*)$", line)
                if m:
                    outputs[m.group(1)] = m.group(2)
    block = {"prompt": name, "success": True, "outputs": {k: outputs.get(k, "done") for k in wanted}}
    result = f"Done with {name}.\n\n```json\n{json.dumps(block)}\n```\n"
    cache_read = int(os.environ.get("SCRIPTED_AGENT_CACHE_READ", "0"))
    cost = float(os.environ.get("SCRIPTED_AGENT_COST", "0.001"))
    print(json.dumps({
        "type": "result", "subtype": "success", "is_error": False, "result": result,
        "session_id": "scripted", "total_cost_usd": cost,
        "usage": {"input_tokens": 40, "output_tokens": 60},
        "modelUsage": {"scripted-model": {"inputTokens": 40, "outputTokens": 60,
                                          "cacheReadInputTokens": cache_read,
                                          "cacheCreationInputTokens": 100, "costUSD": cost}},
    }))


if __name__ == "__main__":
    main()
