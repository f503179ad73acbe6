#!/usr/bin/env python3
"""Generate a synthetic build of N seed-style prompts for the benchmarks.

    python3 benches/gen_prompts.py 200 /tmp/bench-build [--seed 1]

Writes OUTDIR/prompts/01-foundation, .../02-core and .../03-features (about 1/8,
3/8 and 1/2 of N), each holding files `NN.M-gen-M.md` (M counts from 1 within
the phase), and OUTDIR/config.toml with budgets far too large to ever halt.

Each prompt is ~900 words of pseudo-random English built from a fixed
vocabulary, with a few code blocks, the seed's sections (Objective, Context,
Execute, Validation, Checkpoint with a ```json block, If Failed, Next) and
the footer line. There are no {{placeholders}}, so prompts have no variable
dependencies. Output is a pure function of (N, seed).
"""

import argparse
import json
import random
import sys
from pathlib import Path

PHASES = [
    (1, "01-foundation", "Foundation"),
    (2, "02-core", "Core"),
    (3, "03-features", "Features"),
]

NOUNS = """
application archive audio backend batch boundary branch buffer build cache channel
checkpoint client column command component config connection container context
contract counter cursor database dataset default dependency deployment directory
document driver encoder endpoint engine entry environment error event example export
extension feature field file filter folder format function gateway graph handler
header index input installer interface interpreter item job key layer layout library
limit loader lock log manager manifest mapping message method metric migration model
module monitor network node object operation option output package page parameter
parser path pattern payload phase pipeline plugin pointer policy pool port process
profile project prompt property protocol provider query queue record registry
release report repository request resource response result retry role route rule
runner runtime sample scanner schema scope script section server service session
setting signal snapshot socket source spec stage state status step storage stream
string structure summary table target task template tenant test thread threshold
timeout token tool track transaction trigger type unit user value variable vector
version view volume warning window worker workflow workspace
""".split()

VERBS = """
accept add adjust allocate analyse append apply archive assert attach build cache
check clean collect compare compile compute configure confirm connect convert copy
create debug declare define delete deploy detect disable document download enable
encode ensure evaluate export extend extract fetch filter finish flush format
generate handle import include index initialise inspect install integrate keep limit
list load lock log measure merge migrate monitor move normalise open parse patch
persist prepare print process publish read record reduce refactor register reject
release reload remove rename render replace report request reset resolve restore
retry return review run save scan schedule search select send serialise set skip
sort split start stop store stream submit summarise sync test trace track transform
trim update upgrade upload validate verify watch wrap write
""".split()

ADJECTIVES = """
active atomic available basic blocking broken bulk cached careful central clean
clear complete concise concurrent consistent correct current custom default
dependent deterministic direct durable dynamic early empty entire exact existing
explicit external fast final first flat fresh full global hidden idle immutable
incremental initial internal invalid large last lazy legacy light linear local
long main manual minimal missing modular native nested new next normal optional
ordered original parallel partial pending persistent plain portable previous
primary private public quick raw readable recent redundant relative remote
required reusable robust safe secondary separate serial shared short silent simple
single small stable stale static strict structured sufficient temporary typed
unique unused upstream valid verbose visible
""".split()

ADVERBS = """
again already always carefully cleanly completely correctly currently directly
easily eventually exactly explicitly first finally fully immediately later locally
manually never now often once only quickly rarely safely silently simply strictly
""".split()

CONNECTORS = [
    "Then", "After that", "Next", "Before you continue", "If needed", "Otherwise",
    "In practice", "For now", "At this point", "Once done", "As a rule", "Meanwhile",
]

LANGS = ["python", "bash", "rust", "text", "toml", "sql"]


def words_in(text):
    return len(text.split())


class Writer:
    """Deterministic pseudo-English from one random stream."""

    def __init__(self, rng):
        self.rng = rng

    def noun(self):
        return self.rng.choice(NOUNS)

    def phrase(self):
        r = self.rng
        np = self.noun()
        if r.random() < 0.5:
            np = f"{r.choice(ADJECTIVES)} {np}"
        if r.random() < 0.25:
            np = f"{np} {r.choice([x for x in NOUNS if not np.endswith(x)])}"
        return f"the {np}"

    def sentence(self):
        r = self.rng
        parts = []
        if r.random() < 0.2:
            parts.append(r.choice(CONNECTORS) + ",")
        parts.append(r.choice(VERBS))
        parts.append(self.phrase())
        for _ in range(r.randint(0, 3)):
            parts.append(r.choice(["for", "with", "from", "into", "before", "after",
                                   "without", "inside", "through", "per", "and"]))
            parts.append(self.phrase())
        if r.random() < 0.3:
            parts.append(r.choice(ADVERBS))
        if r.random() < 0.2:
            parts.append(f"(`{self.ident()}`)")
        text = " ".join(parts)
        text = text[0].upper() + text[1:]
        return text + r.choice([".", ".", ".", ".", "!"])

    def paragraph(self, lo=2, hi=5):
        return " ".join(self.sentence() for _ in range(self.rng.randint(lo, hi)))

    def ident(self):
        r = self.rng
        sep = r.choice(["_", "_", "-", "."])
        return sep.join(r.choice(NOUNS + VERBS) for _ in range(r.randint(1, 3)))

    def snake(self):
        return "_".join(self.rng.choice(NOUNS + VERBS) for _ in range(self.rng.randint(1, 3)))

    def code_block(self):
        r = self.rng
        lang = r.choice(LANGS)
        a, b, c = self.snake(), self.snake(), self.snake()
        n = r.randint(2, 5000)
        if lang == "python":
            body = (f"def {a}({b}, {c}=None):\n"
                    f"    \"\"\"{r.choice(VERBS).capitalize()} {self.phrase()}.\"\"\"\n"
                    f"    {c} = {c} or []\n"
                    f"    for item in {b}[:{n}]:\n"
                    f"        if item.get(\"{self.noun()}\") is not None:\n"
                    f"            {c}.append(item)\n"
                    f"    print(f\"{a}: {{len({c})}} of {n}\")\n"
                    f"    return {c}\n")
            # the f-string above renders to single braces only
            body = body.replace("{{", "{").replace("}}", "}")
        elif lang == "bash":
            body = (f"mkdir -p {self.noun()}/{self.noun()}\n"
                    f"{r.choice(['python3', 'cargo', 'git', 'make'])} {r.choice(VERBS)} --{self.noun()} {n}\n"
                    f"test -f {self.noun()}.{r.choice(['json', 'toml', 'md', 'log'])} && echo \"{self.noun()} ok\"\n")
        elif lang == "rust":
            body = (f"pub fn {a}({b}: &[u32]) -> Result<u64, Error> {{\n"
                    f"    let {c}: u64 = {b}.iter().map(|x| u64::from(*x)).sum();\n"
                    f"    if {c} > {n} {{\n"
                    f"        return Err(Error::{self.noun().capitalize()});\n"
                    f"    }}\n"
                    f"    Ok({c})\n"
                    f"}}\n")
        elif lang == "toml":
            body = (f"[{self.noun()}]\n"
                    f"{a} = \"{self.ident()}\"\n"
                    f"{b} = {n}\n"
                    f"{c} = {r.choice(['true', 'false'])}\n")
        elif lang == "sql":
            body = (f"CREATE TABLE IF NOT EXISTS {a} (\n"
                    f"    id INTEGER PRIMARY KEY,\n"
                    f"    {b} TEXT NOT NULL,\n"
                    f"    {c} REAL DEFAULT {n / 100:.2f}\n"
                    f");\n"
                    f"CREATE INDEX idx_{a}_{b} ON {a}({b});\n")
        else:
            body = "\n".join(f"{self.ident()}  {r.randint(0, n)}  {r.choice(ADJECTIVES)}"
                             for _ in range(r.randint(2, 5))) + "\n"
        return f"```{lang}\n{body}```"


def phase_sizes(n):
    n1 = max(1, round(n / 8))
    n2 = max(1, round(3 * n / 8))
    return [n1, n2, n - n1 - n2]


def render_prompt(seed, phase_no, m, next_ref):
    pid = f"{phase_no:02d}.{m}"
    stem = f"{pid}-gen-{m}"
    w = Writer(random.Random(f"{seed}:{stem}"))
    r = w.rng
    target = r.randint(820, 980)

    head = [f"# {pid} Gen {m}", "", "## Objective", w.paragraph(1, 2), "", "## Context"]
    for _ in range(r.randint(3, 5)):
        head.append(f"- {w.sentence()}")
    head += ["", "## Execute"]

    tail = ["", "## Validation"]
    for _ in range(r.randint(3, 5)):
        tail.append(f"- [ ] {w.sentence()}")
    tail.append("```bash")
    tail.append(f"{r.choice(['pytest -q', 'cargo test', 'make check'])} {w.noun()}")
    tail.append("```")
    outputs = {f"out_{pid.replace('.', '_')}": "value"}
    checkpoint = json.dumps({"prompt": stem, "success": True, "outputs": outputs}, indent=2)
    tail += ["", "## Checkpoint", "End your reply with this block, filled in with real values:",
             "```json", checkpoint, "```", "", "## If Failed"]
    for _ in range(r.randint(2, 4)):
        tail.append(f"- {w.sentence()}")
    tail += ["", "## Next", f"`{next_ref}`" if next_ref else "Build complete.", "",
             "---", "*Tokens: ~2000 | Time: 5 min | Checkpoint: Required*", ""]

    fixed = words_in("\n".join(head + tail))
    steps = []
    step = 1
    while fixed + sum(words_in(s) for s in steps) < target:
        text = f"{step}. {w.paragraph()}"
        if r.random() < 0.3:
            text += "\n" + w.code_block()
        steps.append(text)
        step += 1
    # never leave a prompt without code
    if not any("```" in s for s in steps):
        steps.append(f"{step}. {w.sentence()}\n{w.code_block()}")

    body = "\n".join(head) + "\n" + "\n".join(steps) + "\n" + "\n".join(tail)
    assert "{{" not in body and "}}" not in body, stem
    return stem, body


def main():
    parser = argparse.ArgumentParser(description="Generate N seed-style benchmark prompts.")
    parser.add_argument("n", type=int, help="number of prompts (at least 3)")
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.n < 3:
        parser.error("N must be at least 3 (one prompt per phase)")

    sizes = phase_sizes(args.n)
    plan = []  # (phase_no, dir, m)
    for (phase_no, dirname, _), size in zip(PHASES, sizes):
        plan += [(phase_no, dirname, m) for m in range(1, size + 1)]

    prompts = args.outdir / "prompts"
    for _, dirname, _ in PHASES:
        (prompts / dirname).mkdir(parents=True, exist_ok=True)

    total_words = 0
    for i, (phase_no, dirname, m) in enumerate(plan):
        next_ref = None
        if i + 1 < len(plan):
            nphase, ndir, nm = plan[i + 1]
            name = f"{nphase:02d}.{nm}-gen-{nm}.md"
            next_ref = name if ndir == dirname else f"{ndir}/{name}"
        stem, body = render_prompt(args.seed, phase_no, m, next_ref)
        (prompts / dirname / f"{stem}.md").write_text(body, encoding="utf-8")
        total_words += words_in(body)

    config = ['[project]', 'name = "bench"', '',
              '[llm]', 'provider = "openai"',
              '# no base_url: the benchmark harness sets OPENAI_BASE_URL',
              'model = "gpt-4o-mini"', 'max_tokens = 2000', '',
              '[tokenizer]', 'encoding = "cl100k_base"', '',
              '[budget]', 'total = 100000000', 'per_prompt = 100000']
    for _, dirname, name in PHASES:
        config += ['', '[[phases]]', f'dir = "{dirname}"', f'name = "{name}"', 'budget = 10000000']
    (args.outdir / "config.toml").write_text("\n".join(config) + "\n", encoding="utf-8")

    print(f"wrote {args.n} prompts ({'/'.join(map(str, sizes))}), {total_words} words, "
          f"and config.toml to {args.outdir}", file=sys.stderr)


if __name__ == "__main__":
    main()
