"""Decode speed of ``common.iter_text`` next to the original samples' way of reading streams.

Run from the repository root::

    python benchmarks/decode_speed.py            # 20,000 tokens, 7 runs each
    python benchmarks/decode_speed.py --tokens 2000 --runs 3   # a quick look

It builds a 20,000-token stream in each wire format (with ``tests/stream_samples.py``, the
same builders the tests use), cuts it into ``PayloadPart`` events two ways -- (a) one part per
event, as a container flushes them, and (b) random 1-64-byte parts (seeded), as the network
may deliver them -- and decodes each with ``iter_text`` and with a baseline written the way
the original AWS samples read streams:

* TGI SSE and LMI json lines: a ``BytesIO`` buffer, ``readline``, ``json.loads`` per line
  (for SSE, ``data:`` stripped first);
* LMI 0.24-0.25 document: each part decoded on its own, the first one with
  ``lstrip(b'{"generated_text": "')``, the last with ``rstrip('"}')``.

Each (decoder, stream, cut) is timed 7 times, interleaved, in this thread's CPU time
(``time.thread_time``: on a shared machine, time spent waiting for a core is not counted),
and the median is reported as tokens per second. Every output is compared with the true
text, so the table also says where a decoder is wrong (or fails). The table is printed and
written to ``benchmarks/results/decode_speed.csv`` and ``.md`` with the command that produced it.
This is a measurement, not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import stream_samples as ss  # noqa: E402

from common.streaming import Token, iter_text  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"

WORDS = [" the", " stream", "ing", " token", " Llama", " 2", ",", ".", " is", " a", "\n",
         " \"quoted\"", " café", " 東京", " 🦙", " back\\slash", " of", " SageMaker", ""]


# ----------------------------------------------------------------------------- baselines


def baseline_sse(events: list[dict]) -> Iterator[str]:
    for line in ss.OriginalSampleLineIterator(events):
        if line.startswith(b"data:"):
            token = json.loads(line[5:])["token"]
            if not token["special"]:
                yield token["text"]


def baseline_jsonlines(events: list[dict]) -> Iterator[str]:
    for line in ss.OriginalSampleLineIterator(events):
        if line:
            token = json.loads(line)["token"]
            if not token.get("special_token"):
                yield token.get("text", "")


def baseline_document(events: list[dict]) -> Iterator[str]:
    for index, event in enumerate(events):
        chunk = event["PayloadPart"]["Bytes"]
        if index == 0:
            chunk = chunk.lstrip(b'{"generated_text": "')
        yield chunk.decode("utf-8").rstrip('"}')


# ----------------------------------------------------------------------------- streams


def model_tokens(count: int, seed: int = 0) -> list[Token]:
    rng = random.Random(seed)
    tokens = [Token(rng.choice(WORDS), rng.randrange(32000), False,
                    round(-rng.random() * 3, 6)) for _ in range(count - 1)]
    return [*tokens, ss.EOS]


def random_cuts(data: bytes, seed: int = 1) -> list[int]:
    rng = random.Random(seed)
    cuts, at = [], 0
    while at < len(data):
        at += rng.randint(1, 64)
        cuts.append(at)
    return cuts


def measure(decode: Callable[[list[dict]], Iterator[str]], events: list[dict]
            ) -> tuple[float, str | None, str]:
    """Time one full decode; return (seconds, text or None, error name or "")."""
    start = time.thread_time()
    try:
        text = "".join(decode(events))
    except Exception as exc:  # a baseline may fail on cut streams; record it, never hide it
        return time.thread_time() - start, None, type(exc).__name__
    return time.thread_time() - start, text, ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    load = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "unknown"
    tokens = model_tokens(args.tokens)
    streams = [
        ("TGI SSE", ss.tgi_sse(tokens), "tgi", baseline_sse),
        ("LMI jsonlines", ss.lmi_jsonlines(tokens), "lmi", baseline_jsonlines),
        ("LMI 0.25 document", ss.lmi_document(tokens, ensure_ascii=False), "lmi",
         baseline_document),
    ]
    rows = []
    for name, sample, container, baseline in streams:
        if sample.ends:
            per_event = ss.cut_events(sample.data, sample.ends)
        else:  # the document: one part per token, as LMI flushes it
            per_event = ss.cut_events(sample.data, _document_token_ends(sample, tokens))
        cuttings = [("one part per event", per_event),
                    ("random 1-64 B parts", ss.cut_events(sample.data,
                                                          random_cuts(sample.data)))]
        for cut_name, events in cuttings:
            ours_times, base_times = [], []
            ours_text = base_text = None
            base_error = ""
            for _ in range(args.runs):
                seconds, ours_text, ours_error = measure(
                    lambda ev, c=container: iter_text(ev, container=c), events)
                assert not ours_error, ours_error
                ours_times.append(seconds)
                seconds, base_text, base_error = measure(baseline, events)
                base_times.append(seconds)
            ours = args.tokens / statistics.median(ours_times)
            base = None if base_error else args.tokens / statistics.median(base_times)
            rows.append({
                "stream": name, "parts": cut_name, "part_count": len(events),
                "ours_tokens_per_s": round(ours),
                "baseline_tokens_per_s": None if base is None else round(base),
                "ratio_ours_to_baseline": None if base is None else round(ours / base, 2),
                "ours_correct": "yes" if ours_text == sample.text else "NO",
                "baseline_correct": (base_error or "no (wrong text)") if base_text
                != sample.text else "yes",
            })
    command = "python benchmarks/decode_speed.py" + (
        "" if argv is None and len(sys.argv) == 1 else " " + " ".join(argv or sys.argv[1:]))
    table = render(rows, args, command, load)
    print(table)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        with open(RESULTS / "decode_speed.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=[*rows[0], "command"])
            writer.writeheader()
            writer.writerows({**row, "command": command} for row in rows)
        (RESULTS / "decode_speed.md").write_text(table + "\n")
        print(f"\nwrote {RESULTS / 'decode_speed.csv'} and {RESULTS / 'decode_speed.md'}")
    return 0


def _document_token_ends(sample: ss.Sample, tokens: list[Token]) -> list[int]:
    """Byte offsets where each token's escaped text ends inside the LMI document."""
    at = sample.data.index(b'"generated_text": "') + len(b'"generated_text": "')
    ends = []
    for token in tokens:
        if not token.special:
            at += len(json.dumps(token.text, ensure_ascii=False)[1:-1].encode())
            ends.append(at)
    return ends


def _number(value: float | None, spec: str) -> str:
    return "failed" if value is None else format(value, spec)


def render(rows: list[dict], args: argparse.Namespace, command: str, load: str) -> str:
    lines = [
        "# Stream decoding speed: common.iter_text vs the original samples' decoding",
        "",
        f"Command: `{command}` -- {args.tokens:,} tokens per stream, median of {args.runs} "
        f"interleaved runs in thread CPU time; Python {platform.python_version()} on "
        f"{platform.machine()} ({platform.system()}), load average {load} before the run.",
        "",
        "| stream | parts | parts (n) | ours (tokens/s) | baseline (tokens/s) | ours / baseline "
        "| ours correct | baseline correct |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['stream']} | {row['parts']} | {row['part_count']:,} | "
            f"{row['ours_tokens_per_s']:,} | {_number(row['baseline_tokens_per_s'], ',')} | "
            f"{_number(row['ratio_ours_to_baseline'], '.2f')} | "
            f"{row['ours_correct']} | {row['baseline_correct']} |")
    lines += [
        "",
        "Baselines: SSE and json lines -- the samples' `LineIterator` (a `BytesIO` that keeps "
        "every byte, `readline`) and `json.loads` per line; the LMI document -- each part "
        "decoded alone after `lstrip(b'{\"generated_text\": \"')`. The line baselines frame "
        "lines correctly on these streams because each ends with a newline; on a last line "
        "without one their iterator never returns (see tests/test_streaming.py). Tokens/s "
        "for the document counts the model's tokens, although its parts are bytes; its "
        "baseline is fast because it does no JSON decoding at all (its text keeps the "
        "escapes), and it raises UnicodeDecodeError as soon as a part splits a character.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
