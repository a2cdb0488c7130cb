"""Our load tool and LLMeter side by side, each as its own process, at 1, 8 and 32 streams.

Run from the repository root (needs ``pip install -r requirements-bench.txt`` for LLMeter)::

    python benchmarks/bench_vs_llmeter.py                        # 1,8,32 streams, 5 rounds
    python benchmarks/bench_vs_llmeter.py --levels 1,8 --rounds 3

The stand-in's ``sagemaker-runtime`` server runs in its own process with one endpoint that
replays a TGI answer at a fixed pace (first token after ``--ttft`` s, then
``--tokens-per-s``; 60 ms and 60 tokens/s by default). Against it, at every level and in
every round, two client processes run one after the other, in alternating order:

* **ours** -- ``python -m common.bench --endpoint ... --concurrency N --requests 2N``, the
  load tool's command line exactly as a user types it;
* **LLMeter** -- ``benchmarks/llmeter_client.py``: LLMeter 0.2.0's ``Runner`` with
  ``SageMakerStreamEndpoint``, ``N`` clients of 2 requests each, the same request body.

For each run: the child's CPU time (user + system, from ``os.wait4``'s rusage, so the
interpreter's start and every import are included) per request; each tool's TTFT p50 by its
own clock; and the **client overhead** in that TTFT -- the tool's TTFT minus the stand-in's
own (request received to first frame written, from ``GET /_local/timings/{request id}``):
what building, signing and sending the request and reading, parsing and scheduling the
first frame add. For ours also the **arrival lag**: our first token's timestamp minus the
moment the stand-in finished writing that frame (``time.perf_counter`` is
``CLOCK_MONOTONIC`` in both processes on Linux). The table gives the median over the rounds
of each per-run figure; ``results/bench_vs_llmeter.md`` also lists every run.

Python caches compiled bytecode, so both tools' children run with a cache of their own
(``PYTHONPYCACHEPREFIX`` in a temporary folder, filled by one warm-up run each), as after a
normal install; ``--no-bytecode`` makes every child compile every module it imports
(``PYTHONDONTWRITEBYTECODE=1`` and an empty cache), which is far slower for both.
This is a measurement, not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from client_overhead import (  # noqa: E402
    ENDPOINT,
    REGION,
    RESULTS,
    command_line,
    fetch_timings,
    long_answer,
    machine,
    replay_server,
    use_server,
)

from common.bench import (  # noqa: E402
    DEFAULT_PROMPT,
    build_request_payload,
    markdown_table,
    parse_levels,
    write_rows_csv,
)
from common.metrics import percentile  # noqa: E402

TOOLS = ("ours", "llmeter")
TTFT_GOAL_MS = 2.0


@dataclass
class Run:
    """One child process: a tool at one level in one round, and what it measured."""

    tool: str
    level: int
    round: int
    requests: int
    cpu_s: float
    wall_s: float
    ttft_ms: list[float] = field(default_factory=list)
    overhead_ms: list[float] = field(default_factory=list)
    arrival_lag_ms: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def cpu_ms_per_request(self) -> float:
        """The child's CPU time (imports and start included) per request, in ms."""
        return self.cpu_s * 1000 / self.requests

    def row(self) -> dict[str, str]:
        """The run as a table row."""
        return {"round": str(self.round), "streams": str(self.level), "tool": self.tool,
                "requests": str(self.requests), "errors": str(self.errors),
                "cpu_ms_per_request": f"{self.cpu_ms_per_request:.1f}",
                "ttft_p50_ms": _p50(self.ttft_ms), "overhead_p50_ms": _p50(self.overhead_ms),
                "arrival_lag_p50_ms": _p50(self.arrival_lag_ms, digits=2),
                "wall_s": f"{self.wall_s:.2f}"}


def _p50(values: list[float], digits: int = 1) -> str:
    return f"{percentile(values, 50):.{digits}f}" if values else ""


def run_child(command: list[str], env: dict[str, str], log: Path) -> tuple[float, float, int]:
    """Run ``command``; return its CPU seconds (user + system, its own and its waited-for
    children's), its wall seconds and its exit status."""
    with log.open("w") as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime, wall, process.returncode


def server_times(url: str, request_id: str) -> tuple[int, int] | None:
    """The stand-in's ``perf_counter_ns`` when it received the request and when it had written
    the first token's frame; ``None`` when it has no frames for that id."""
    timing = fetch_timings(url, request_id)
    if not timing.get("frames"):
        return None
    return timing["received_ns"], timing["frames"][0][1]


def ours(args: argparse.Namespace, level: int, round_: int, env: dict[str, str], url: str,
         work: Path) -> Run:
    """One run of ``python -m common.bench`` as its own process."""
    requests = level * args.requests_per_stream
    table = work / f"ours-{round_}-{level}.csv"
    command = [sys.executable, "-m", "common.bench", "--endpoint", ENDPOINT,
               "--container", "tgi", "--region", REGION, "--concurrency", str(level),
               "--requests", str(requests), "--max-new-tokens", str(args.max_new_tokens),
               "--no-progress", "--requests-csv", str(table)]
    cpu, wall, status = run_child(command, env, work / f"ours-{round_}-{level}.log")
    run = Run("ours", level, round_, requests, cpu, wall)
    if status not in (0, 1) or not table.exists():
        run.errors = requests
        return run
    with table.open() as handle:
        for row in csv.DictReader(handle):
            if row["error"] or not row["ttft_ms"]:
                run.errors += 1
                continue
            ttft = float(row["ttft_ms"])
            run.ttft_ms.append(ttft)
            times = server_times(url, row["request_id"])
            if times is not None:
                received, first_frame = times
                run.overhead_ms.append(ttft - (first_frame - received) / 1e6)
                first_token_ns = float(row["started_s"]) * 1e9 + ttft * 1e6
                run.arrival_lag_ms.append((first_token_ns - first_frame) / 1e6)
    return run


def llmeter(args: argparse.Namespace, level: int, round_: int, env: dict[str, str], url: str,
            work: Path, payload_file: Path) -> Run:
    """One run of LLMeter (``llmeter_client.py``) as its own process."""
    out = work / f"llmeter-{round_}-{level}.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "llmeter_client.py"),
               "--endpoint", ENDPOINT, "--region", REGION, "--clients", str(level),
               "--requests-per-client", str(args.requests_per_stream),
               "--payload", str(payload_file), "--out", str(out)]
    cpu, wall, status = run_child(command, env, work / f"llmeter-{round_}-{level}.log")
    run = Run("llmeter", level, round_, level * args.requests_per_stream, cpu, wall)
    if status != 0 or not out.exists():
        run.errors = run.requests
        return run
    for record in json.loads(out.read_text()):
        if record["error"] or record["ttft_s"] is None:
            run.errors += 1
            continue
        ttft = record["ttft_s"] * 1000
        run.ttft_ms.append(ttft)
        times = server_times(url, record["request_id"]) if record["request_id"] else None
        if times is not None:
            received, first_frame = times
            run.overhead_ms.append(ttft - (first_frame - received) / 1e6)
    return run


def _median(runs: list[Run], figure: str) -> float | None:
    values = []
    for run in runs:
        if figure == "cpu":
            values.append(run.cpu_ms_per_request)
        elif getattr(run, figure):
            values.append(percentile(getattr(run, figure), 50))
    return statistics.median(values) if values else None


def _spread(runs: list[Run]) -> str:
    values = sorted(run.cpu_ms_per_request for run in runs)
    return f"{values[0]:.0f}-{values[-1]:.0f}"


def summary(runs: list[Run], levels: list[int]) -> tuple[list[dict[str, str]], list[str]]:
    """The table (medians over the rounds) and one verdict line per level."""
    rows, verdicts = [], []

    def shown(value: float | None, digits: int = 1) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    for level in levels:
        mine = [run for run in runs if run.level == level and run.tool == "ours"]
        theirs = [run for run in runs if run.level == level and run.tool == "llmeter"]
        cpu = (_median(mine, "cpu"), _median(theirs, "cpu"))
        ttft = (_median(mine, "ttft_ms"), _median(theirs, "ttft_ms"))
        rows.append({
            "streams": str(level),
            "rounds": str(len(mine)),
            "ours_cpu_ms_per_request": shown(cpu[0]),
            "llmeter_cpu_ms_per_request": shown(cpu[1]),
            "ours_cpu_range": _spread(mine),
            "llmeter_cpu_range": _spread(theirs),
            "ours_ttft_p50_ms": shown(ttft[0]),
            "llmeter_ttft_p50_ms": shown(ttft[1]),
            "ours_overhead_p50_ms": shown(_median(mine, "overhead_ms")),
            "llmeter_overhead_p50_ms": shown(_median(theirs, "overhead_ms")),
            "ours_arrival_lag_p50_ms": shown(_median(mine, "arrival_lag_ms"), 2),
            "errors_ours/llmeter": f"{sum(r.errors for r in mine)}/"
                                   f"{sum(r.errors for r in theirs)}",
        })
        if None in cpu or None in ttft:
            verdicts.append(f"{level} streams: incomplete (errors; see the runs)")
            continue
        cpu_ok = cpu[0] <= cpu[1]
        # A lower TTFT than LLMeter's is less of our own overhead (see overhead_p50), never
        # a miss: the goal is not to report more than TTFT_GOAL_MS above it.
        gap = ttft[0] - ttft[1]
        if abs(gap) <= TTFT_GOAL_MS:
            ttft_verdict = f"within {TTFT_GOAL_MS:g} ms"
        elif gap < 0:
            ttft_verdict = "below LLMeter's"
        else:
            ttft_verdict = f"ABOVE LLMeter's by more than {TTFT_GOAL_MS:g} ms"
        verdicts.append(
            f"{level} streams: CPU per request {cpu[0]:.1f} vs {cpu[1]:.1f} ms "
            f"({'at or below' if cpu_ok else 'ABOVE'} LLMeter's); TTFT p50 {ttft[0]:.1f} vs "
            f"{ttft[1]:.1f} ms ({gap:+.1f} ms: {ttft_verdict})")
    return rows, verdicts


def child_environment(work: Path, bytecode: bool) -> dict[str, str]:
    """This process's environment (the stand-in's AWS variables included) for the children,
    with a bytecode cache of their own -- or none at all."""
    env = dict(os.environ)
    env.pop("PYTHONPYCACHEPREFIX", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if bytecode:
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONPYCACHEPREFIX"] = str(work / "empty-pycache")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=parse_levels, default=[1, 8, 32],
                        help="concurrent streams (default 1,8,32)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="runs of each tool at each level, interleaved (default 5)")
    parser.add_argument("--requests-per-stream", type=int, default=2,
                        help="requests per level = this x the level (default 2)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--ttft", type=float, default=0.06, help="replay TTFT in s (0.06)")
    parser.add_argument("--tokens-per-s", type=float, default=60.0,
                        help="replay pace per stream (60)")
    parser.add_argument("--no-bytecode", action="store_true",
                        help="children compile every module they import (no bytecode cache)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run every round, print the table and the verdicts, write CSV and Markdown; return 0."""
    args = build_parser().parse_args(argv)
    payload = build_request_payload(DEFAULT_PROMPT, "tgi", args.max_new_tokens)
    runs: list[Run] = []
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-vs-llmeter-") as folder, \
            replay_server(ttft_s=args.ttft, tokens_per_s=args.tokens_per_s,
                          answer=long_answer(args.max_new_tokens)) as server:
        work = Path(folder)
        use_server(server.url)
        env = child_environment(work, bytecode=not args.no_bytecode)
        payload_file = work / "payload.json"
        payload_file.write_text(json.dumps(payload))
        if not args.no_bytecode:  # fill each tool's bytecode cache; not counted
            ours(args, 1, 0, env, server.url, work)
            llmeter(args, 1, 0, env, server.url, work, payload_file)
        for round_ in range(1, args.rounds + 1):
            for level in args.levels:
                order = TOOLS if (round_ + level) % 2 else TOOLS[::-1]
                for tool in order:
                    run = (ours(args, level, round_, env, server.url, work) if tool == "ours"
                           else llmeter(args, level, round_, env, server.url, work,
                                        payload_file))
                    runs.append(run)
                    print(f"round {round_}, {level} streams, {tool}: "
                          f"{run.cpu_ms_per_request:.1f} ms CPU per request, TTFT p50 "
                          f"{_p50(run.ttft_ms) or '-'} ms, {run.errors} errors",
                          file=sys.stderr, flush=True)
    wall = time.perf_counter() - started
    rows, verdicts = summary(runs, args.levels)
    table = markdown_table(rows)
    notes = [
        *verdicts,
        "",
        f"Stand-in: replay {args.ttft * 1000:.0f} ms to the first token, then "
        f"{args.tokens_per_s:g} tokens/s, {args.max_new_tokens} new tokens per request, TGI "
        f"format, in its own process; {args.requests_per_stream} requests per stream at each "
        f"level; {args.rounds} rounds, the two tools one after the other in alternating order. "
        f"Bytecode: {'none (every import compiled)' if args.no_bytecode else 'cached'}.",
        "Columns: medians over the rounds of each run's figure. cpu_ms_per_request is the "
        "child process's user + system CPU (interpreter start and imports included) over its "
        "requests, and its range over the rounds; ttft_p50 is each tool's own clock; "
        "overhead_p50 is the tool's TTFT minus the stand-in's (request received to first "
        "frame written) -- the client's own share of the TTFT it reports; arrival_lag_p50 is "
        "our first token's timestamp minus the stand-in's first-frame write.",
        f"Machine: {machine()}; load average {load_before:.1f} before the run. Wall time "
        f"{wall:.0f} s.",
        f"Command: `{command_line()}`",
    ]
    runs_table = markdown_table([run.row() for run in runs])
    print()
    print(table)
    print()
    print("\n".join(notes))
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_rows_csv(rows, RESULTS / "bench_vs_llmeter.csv")
    (RESULTS / "bench_vs_llmeter.md").write_text("\n".join(
        [table, "", *notes, "", "Every run:", "", runs_table]) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
