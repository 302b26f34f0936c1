#!/usr/bin/env python3
"""Instructions per operation, mongrove against the raw driver, counted by callgrind.

Wall-clock and CPU time on a shared machine move by tens of percent from one round to the next;
an instruction count does not: callgrind counts what the client executes, the same on a quiet
or a busy machine. Each workload runs under callgrind once per side at scale 1 and at scale 2
(`benches/compare.rs --scale`), on tokio's current-thread runtime; the set-up is the same at
both scales, so the difference of the two totals over the added operations is the cost of one
operation.

    scripts/instructions.py                          every workload below
    scripts/instructions.py --only "find by id"      some of them (comma-separated)
    scripts/instructions.py --write book/src/performance   also writes instructions.md there

Needs valgrind (Debian: `apt-get install valgrind`). A server is started by the test kit for
each run, outside callgrind (it is a child process, which callgrind does not follow).
"""

import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Workload, and how many operations it runs at scale 1 (see `Sizes::full` in compare.rs).
WORKLOADS = [
    ("insert one at a time", 1_000),
    ("find by id", 1_000),
    ("version-checked save", 1_000),
    ("$inc by id", 1_000),
    ("2-write transaction", 200),
    ("insert_many", 10_000 * 5),  # five calls per round (`bulk_calls`)
    ("find by filter and sort", 200),
    ("32 concurrent find_by_id", 200 * 32),
    ("change-stream delivery", 200),
]
SIDES = ["driver", "mongrove"]


def bench_binary():
    out = subprocess.run(
        ["cargo", "bench", "--bench", "compare", "--no-run", "--message-format=json"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.PIPE,
    ).stdout
    for line in out.decode().splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable"):
            if message["target"]["name"] == "compare":
                return message["executable"]
    sys.exit("cargo did not report the compare bench's executable")


def count(binary, workload, side, scale):
    with tempfile.TemporaryDirectory() as scratch:
        # One malloc arena: with one per thread, which arena frees what depends on which tokio
        # worker ran a task, and malloc's own work then varies by ~1% from run to run.
        env = dict(os.environ, MALLOC_ARENA_MAX="1")
        run = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={scratch}/callgrind.out",
                binary,
                "--only",
                workload,
                "--sides",
                side,
                "--rounds",
                "1",
                "--no-mongoose",
                "--scale",
                str(scale),
                # One thread: on the multi-thread runtime, how long idle workers spin before
                # they park depends on the machine's load, and so does the count.
                "--runtime",
                "current-thread",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    log = run.stderr.decode(errors="replace")
    if run.returncode != 0:
        sys.exit(f"{workload} / {side} at scale {scale} failed:\n{log[-3000:]}")
    found = re.search(r"Collected : (\d+)", log)
    if not found:
        sys.exit(f"no instruction count in callgrind's output:\n{log[-3000:]}")
    return int(found.group(1))


def main():
    argv = sys.argv[1:]

    def value(flag):
        return argv[argv.index(flag) + 1] if flag in argv else None

    only = value("--only")
    chosen = [w for w in WORKLOADS if not only or w[0] in [o.strip() for o in only.split(",")]]
    if not chosen:
        sys.exit("--only names no workload; they are: " + ", ".join(w for w, _ in WORKLOADS))
    binary = bench_binary()
    rows = []
    for workload, ops in chosen:
        per_op = {}
        for side in SIDES:
            once = count(binary, workload, side, 1)
            twice = count(binary, workload, side, 2)
            per_op[side] = (twice - once) / ops
            print(f"{workload} / {side}: {per_op[side]:,.0f} instructions per op", file=sys.stderr)
        rows.append((workload, per_op["driver"], per_op["mongrove"]))
    table = [
        "| workload | driver instructions/op | mongrove instructions/op | mongrove ÷ driver |",
        "|---|--:|--:|--:|",
    ]
    for workload, driver, mongrove in rows:
        table.append(f"| {workload} | {driver:,.0f} | {mongrove:,.0f} | {mongrove / driver:.3f} |")
    text = "\n".join(table) + "\n"
    print(text)
    target = value("--write")
    if target:
        os.makedirs(target, exist_ok=True)
        with open(os.path.join(target, "instructions.md"), "w") as out:
            out.write(text)
        print(f"wrote {target}/instructions.md", file=sys.stderr)


if __name__ == "__main__":
    main()
