#!/usr/bin/env python3
"""Seed-style Python build runner: the baseline `orchestrator run` is compared with.

Written from the `BuildSession` class of the seed (shared/seeds/orchestrator.md):
same status.json schema, saved (json.dump, indent=2) after every checkpoint.
For each prompt, in build order, it sends one streamed chat.completions request
through the official `openai` SDK (system: a short context recall; user: the
prompt text), collects the streamed reply, parses the last ```json block for
the outputs and checkpoints the prompt. Prompts already in `completed` are
skipped, so a rerun resumes where the last one stopped.

    pip install openai
    OPENAI_API_KEY=... python3 benches/seed_runner.py \\
        --prompts prompts --checkpoints checkpoints --base-url http://127.0.0.1:8080/v1
"""

import argparse
import json
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path

from openai import OpenAI

PROMPT_NAME = re.compile(r"^(\d+)\.(\d+)-.*\.md$")
JSON_BLOCK = re.compile(r"```json[ \t]*\r?\n(.*?)```", re.DOTALL)


class BuildSession:
    def __init__(self, checkpoint_dir="checkpoints", first_prompt="01.1-python-setup.md"):
        self.checkpoint_dir = checkpoint_dir
        os.makedirs(self.checkpoint_dir, exist_ok=True)
        self.status_file = f"{self.checkpoint_dir}/status.json"
        self.memory_file = f"{self.checkpoint_dir}/memory.json"
        self.first_prompt = first_prompt
        self.load_or_create()

    def load_or_create(self):
        if os.path.exists(self.status_file):
            with open(self.status_file, 'r') as f:
                self.status = json.load(f)
        else:
            self.status = {
                "session_id": datetime.now().strftime("%Y%m%d_%H%M%S"),
                "started": datetime.now().isoformat(),
                "current_prompt": self.first_prompt,
                "completed": [],
                "failed": [],
                "warnings": [],
                "variables": {}
            }
            self.save()

    def checkpoint(self, prompt_id, success=True, output=None):
        if success:
            self.status["completed"].append(prompt_id)
        else:
            self.status["failed"].append(prompt_id)

        if output:
            self.status["variables"][prompt_id] = output

        self.status["last_checkpoint"] = datetime.now().isoformat()
        self.save()

    def save(self):
        with open(self.status_file, 'w') as f:
            json.dump(self.status, f, indent=2)


def build_order(prompts_dir):
    """All NN.M-*.md files under the phase folders, by (phase, step) numerically."""
    found = []
    for path in Path(prompts_dir).rglob("*.md"):
        m = PROMPT_NAME.match(path.name)
        if m:
            found.append(((int(m.group(1)), int(m.group(2))), path))
    found.sort()
    return [path for _, path in found]


def context_recall(session, prompt_name, index, total):
    recent = session.status["completed"][-3:]
    lines = [
        "You are executing a multi-step software build, one prompt at a time.",
        f"Now: {prompt_name} (step {index} of {total}).",
        f"Completed so far: {len(session.status['completed'])} prompts"
        + (f", most recently {', '.join(recent)}." if recent else "."),
        "Do the step, then end your reply with the ```json checkpoint block the prompt asks for.",
    ]
    return "\n".join(lines)


def parse_checkpoint(reply):
    blocks = JSON_BLOCK.findall(reply)
    if not blocks:
        return None
    try:
        data = json.loads(blocks[-1])
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def main():
    parser = argparse.ArgumentParser(description="Seed-style build runner (benchmark baseline).")
    parser.add_argument("--prompts", required=True, help="folder holding the phase folders")
    parser.add_argument("--checkpoints", default="checkpoints", help="where status.json goes")
    parser.add_argument("--base-url", required=True, help="OpenAI-compatible API base URL (…/v1)")
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--max-tokens", type=int, default=2000)
    args = parser.parse_args()

    prompts = build_order(args.prompts)
    if not prompts:
        sys.exit(f"no NN.M-*.md prompts under {args.prompts}")

    client = OpenAI(api_key=os.environ.get("OPENAI_API_KEY", "sk-bench"), base_url=args.base_url)
    session = BuildSession(args.checkpoints, first_prompt=prompts[0].name)
    print(f"Session: {session.status['session_id']}")

    done = set(session.status["completed"])
    usage_in = usage_out = 0
    started = time.perf_counter()
    for i, path in enumerate(prompts, 1):
        prompt_id = path.stem
        if prompt_id in done:
            continue
        session.status["current_prompt"] = path.name

        stream = client.chat.completions.create(
            model=args.model,
            max_tokens=args.max_tokens,
            messages=[
                {"role": "system", "content": context_recall(session, path.name, i, len(prompts))},
                {"role": "user", "content": path.read_text(encoding="utf-8")},
            ],
            stream=True,
            stream_options={"include_usage": True},
        )
        parts = []
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
            if chunk.usage:
                usage_in += chunk.usage.prompt_tokens
                usage_out += chunk.usage.completion_tokens
        reply = "".join(parts)

        data = parse_checkpoint(reply)
        if data is None:
            session.status["warnings"].append(f"{prompt_id}: no valid ```json checkpoint block in reply")
            session.checkpoint(prompt_id, False)
            print(f"FAILED {prompt_id}: no checkpoint block; fix and rerun to resume", file=sys.stderr)
            sys.exit(1)
        outputs = data.get("outputs") or {}
        session.checkpoint(prompt_id, bool(data.get("success", True)), outputs)
        print(f"[{i}/{len(prompts)}] {prompt_id} ok ({len(reply)} chars)")

    if len(session.status["completed"]) >= len(prompts):
        session.status["current_prompt"] = None
        session.save()
    elapsed = time.perf_counter() - started
    print(f"Done: {len(session.status['completed'])} completed, {len(session.status['failed'])} failed, "
          f"{usage_in} prompt + {usage_out} completion tokens, {elapsed:.2f}s")


if __name__ == "__main__":
    main()
