"""Streaming time to first token vs. blocking latency, measured on the real model.

Serves SmolLM2-135M-Instruct (:class:`common.local.model_backend.ModelBackend`) behind the
stand-in's ``sagemaker-runtime`` server as a TGI endpoint, and asks it the same Llama 2 chat
prompt greedily for 64, 256 and 512 new tokens, twice each way through a real boto3 client:

* streaming -- ``invoke_endpoint_with_response_stream``: the time until the first token's
  text is in the client's hands (TTFT), the whole stream's time, and tokens/s after the first;
* blocking -- ``invoke_endpoint``: the time until the whole answer arrives.

It prints a table and writes ``benchmarks/results/model_latency.csv`` and ``.md`` (with the
command and the machine). It never passes or fails: timings depend on the machine.

    python benchmarks/model_latency.py [--tokens 64 256 512] [--repeats 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from common.local.model_backend import MODEL_NAME, ModelBackend  # noqa: E402
from common.local.runtime import EndpointInfo, RuntimeServer  # noqa: E402
from common.prompts import build_llama2_prompt  # noqa: E402
from common.streaming import iter_tokens  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results"
TGI_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
             "2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04")
ENDPOINT = "smollm2-bench"
PROMPT = build_llama2_prompt([
    {"role": "system", "content": "You are a helpful marketing assistant."},
    {"role": "user", "content": "Write a long, detailed launch email for AnyCloud Internet "
                                "Service: its speed, its price, its support, a coupon code "
                                "EARLYB1RD, and a friendly sign-off."},
])


@dataclass
class Row:
    """The medians of one setting of ``max_new_tokens``."""

    max_new_tokens: int
    tokens: int
    ttft_s: float
    stream_total_s: float
    tokens_per_s: float
    blocking_s: float


def _client(url: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "sagemaker-runtime", region_name="us-east-1", endpoint_url=url,
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(read_timeout=600, retries={"total_max_attempts": 1}))


def _body(max_new_tokens: int, stream: bool) -> str:
    parameters = {"max_new_tokens": max_new_tokens, "do_sample": False}
    return json.dumps({"inputs": PROMPT, "parameters": parameters, "stream": stream})


def stream_once(client, max_new_tokens: int) -> tuple[float, float, int]:
    """Return (TTFT, total seconds, token count) of one streamed answer."""
    start = time.perf_counter()
    response = client.invoke_endpoint_with_response_stream(
        EndpointName=ENDPOINT, Body=_body(max_new_tokens, True), ContentType="application/json")
    first, count = None, 0
    for token in iter_tokens(response["Body"], container="tgi"):
        count += 1
        if first is None and token.text and not token.special:
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    return (total if first is None else first), total, count


def blocking_once(client, max_new_tokens: int) -> float:
    """Return the seconds until a non-streamed answer arrived whole."""
    start = time.perf_counter()
    response = client.invoke_endpoint(
        EndpointName=ENDPOINT, Body=_body(max_new_tokens, False), ContentType="application/json")
    response["Body"].read()
    return time.perf_counter() - start


def measure(client, max_new_tokens: int, repeats: int) -> Row:
    """Stream and block ``repeats`` times each (alternating); return the medians."""
    streams, blocks = [], []
    for _ in range(repeats):
        streams.append(stream_once(client, max_new_tokens))
        blocks.append(blocking_once(client, max_new_tokens))
    ttft = statistics.median(s[0] for s in streams)
    total = statistics.median(s[1] for s in streams)
    tokens = int(statistics.median(s[2] for s in streams))
    rate = statistics.median((s[2] - 1) / (s[1] - s[0]) for s in streams if s[1] > s[0])
    return Row(max_new_tokens, tokens, ttft, total, rate, statistics.median(blocks))


def table(rows: list[Row]) -> str:
    """Return the rows as a Markdown table."""
    lines = ["| max_new_tokens | tokens streamed | streaming TTFT (ms) | stream total (s) | "
             "tokens/s | blocking latency (s) | TTFT / blocking |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r.max_new_tokens} | {r.tokens} | {r.ttft_s * 1000:.0f} | "
                     f"{r.stream_total_s:.2f} | {r.tokens_per_s:.1f} | {r.blocking_s:.2f} | "
                     f"{r.ttft_s / r.blocking_s:.1%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status (0)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    backend = ModelBackend()
    backend.preload()
    import torch
    import transformers

    endpoints = {ENDPOINT: EndpointInfo(ENDPOINT, "InService", TGI_IMAGE, {})}
    with RuntimeServer(endpoints.get, backend=backend) as server:
        client = _client(server.url)
        stream_once(client, 8)  # warm-up: first-call allocations stay out of the numbers
        rows = []
        for max_new_tokens in args.tokens:
            row = measure(client, max_new_tokens, args.repeats)
            rows.append(row)
            print(f"max_new_tokens={max_new_tokens}: TTFT {row.ttft_s * 1000:.0f} ms, "
                  f"blocking {row.blocking_s:.2f} s", file=sys.stderr, flush=True)

    command = "python benchmarks/model_latency.py " + shlex.join(argv or sys.argv[1:])
    machine = (f"{platform.machine()}, {os.cpu_count()} CPU cores, torch "
               f"{torch.__version__} ({torch.get_num_threads()} threads), transformers "
               f"{transformers.__version__}, Python {platform.python_version()}")
    markdown = table(rows)
    print(markdown)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "model_latency.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["max_new_tokens", "tokens_streamed", "streaming_ttft_s",
                         "stream_total_s", "tokens_per_s", "blocking_latency_s"])
        for r in rows:
            writer.writerow([r.max_new_tokens, r.tokens, f"{r.ttft_s:.4f}",
                             f"{r.stream_total_s:.4f}", f"{r.tokens_per_s:.2f}",
                             f"{r.blocking_s:.4f}"])
    (RESULTS / "model_latency.md").write_text(
        f"# Streaming TTFT vs. blocking latency on the real model ({MODEL_NAME})\n\n"
        f"Command: `{command.strip()}`\n\n"
        f"Machine: {machine}. Model load: {backend.load_seconds:.1f} s (once, before the "
        f"runs). Greedy decoding, one request at a time, through the local stand-in's "
        f"sagemaker-runtime server (TGI format) and boto3; medians of {args.repeats} runs "
        f"each way.\n\n{markdown}\n\n"
        "Streaming hands the reader the first token after about one forward pass, whatever "
        "the answer's length; the blocking call waits for the whole answer, which grows "
        "with the token count.\n"
    )
    print(f"wrote {RESULTS / 'model_latency.csv'} and {RESULTS / 'model_latency.md'}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
