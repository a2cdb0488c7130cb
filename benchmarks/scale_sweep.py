"""One inference-component copy under rising concurrency, measured by two tools side by side.

Run from the repository root (needs ``pip install -r requirements-bench.txt`` for LLMeter)::

    python benchmarks/scale_sweep.py                      # levels 1,2,4,8,16,32
    python benchmarks/scale_sweep.py --levels 1,4,16 --copy-concurrency 8

It starts the whole local stand-in (:class:`common.local.stack.LocalStack`: moto control
plane, the scaling model, the runtime server) in **its own process** with a compressed clock
and small copies (``--copy-concurrency`` streams each, paced at ``--copy-ttft`` and
``--copy-tokens-per-s``), and creates, with boto3 as the scale notebook does, an endpoint
for inference components and one component with one copy. Then, for every level, on the
same endpoint and component in the same run:

* **ours** -- :class:`common.bench.LoadRunner`, the engine of :func:`common.bench.run_sweep`
  (the notebooks' capacity sweep: ``level`` streams at once, ``2 x level`` requests,
  ``InferenceComponentName`` on each), one loop and one client for every level, as
  ``run_sweep`` keeps them;
* **LLMeter** -- ``llmeter.runner.Runner`` with its ``SageMakerStreamEndpoint`` (extended
  by three lines to send ``InferenceComponentName``, which 0.2.0 does not), ``clients=level``
  and 2 requests per client.

For each tool: TTFT p50/p95 and tokens/s per stream (p50) and in total, computed the same way
from each tool's own per-request timings, and the client CPU per stream (``process_time`` of
this process, which holds only the client, divided by the requests). The table goes to
``benchmarks/results/scale_sweep.{csv,md}``, the sweep chart with the chosen target to
``scale_sweep.png``, and the capacity table (with the cost per 1M output tokens at the
7B preset's price) to ``scale_sweep.md``. This is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from client_overhead import RESULTS, command_line, machine

from common.bench import LevelReport, LoadRunner, markdown_table, parse_levels, write_rows_csv
from common.metrics import percentile

ROOT = Path(__file__).resolve().parents[1]
ENDPOINT = "bench-scale"
COMPONENT = "bench-scale-ic"
MODEL = "bench-scale-model"


# --------------------------------------------------------------------------- the stand-in


def _serve(conn: Any, options: dict[str, Any]) -> None:
    """Child process: run a LocalStack, send its environment, serve until told to stop."""
    from common.local.stack import LocalStack

    with LocalStack(**options) as stack:
        conn.send(dict(stack.env))
        conn.recv()  # any message (or the parent's exit) ends it
        conn.send(stack.scaling_events() if hasattr(stack, "scaling_events") else [])


def start_stand_in(options: dict[str, Any]) -> tuple[Any, Any, dict[str, str]]:
    """Start the stand-in in its own process; apply its environment to this one."""
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_serve, args=(child, options),
                                                           daemon=True)
    process.start()
    env = parent.recv()
    os.environ.update(env)
    return process, parent, env


def deploy(preset: Any) -> None:
    """Create the model, the endpoint for components and the component, as the notebook does."""
    import boto3

    from common.presets import scaling_settings
    from common.scaling import wait_for_inference_component

    session = boto3.Session()
    sm = session.client("sagemaker")
    role = "arn:aws:iam::123456789012:role/bench"
    scaling = scaling_settings(preset)
    sm.create_model(ModelName=MODEL, ExecutionRoleArn=role, PrimaryContainer={
        "Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-"
                 "inference:2.7.0-tgi3.3.6-gpu-py311-cu124-ubuntu22.04",
        "Environment": preset.tgi_environment()})
    sm.create_endpoint_config(EndpointConfigName=ENDPOINT, ExecutionRoleArn=role,
                              ProductionVariants=[{
                                  "VariantName": "AllTraffic",
                                  "InstanceType": preset.instance_type,
                                  "InferenceAmiVersion": preset.inference_ami_version(),
                                  "InitialInstanceCount": 1,
                                  "ManagedInstanceScaling": {
                                      "Status": "ENABLED", "MinInstanceCount": 0,
                                      "MaxInstanceCount": scaling.max_instances},
                                  "RoutingConfig": {
                                      "RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"}}])
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=ENDPOINT)
    from common.endpoints import wait_for_endpoint

    wait_for_endpoint(ENDPOINT, sagemaker_client=sm, poll_s=0.5, progress=False)
    sm.create_inference_component(
        InferenceComponentName=COMPONENT, EndpointName=ENDPOINT, VariantName="AllTraffic",
        Specification={"ModelName": MODEL, "ComputeResourceRequirements": {
            "NumberOfAcceleratorDevicesRequired": scaling.accelerators_per_copy,
            "MinMemoryRequiredInMb": scaling.memory_per_copy_mb}},
        RuntimeConfig={"CopyCount": 1})
    wait_for_inference_component(COMPONENT, sagemaker_client=sm, poll_s=0.5, progress=False)


# --------------------------------------------------------------------------- the two tools


def ours(runner: LoadRunner, level: int) -> tuple[LevelReport, float]:
    """One level on the sweep's runner; returns its report and the client CPU seconds."""
    cpu = time.process_time()
    report = runner.level(level, 2 * level)
    return report, time.process_time() - cpu


def _llmeter_endpoint() -> Any:
    from llmeter.endpoints.sagemaker import SageMakerBase, SageMakerStreamEndpoint

    class ComponentStreamEndpoint(SageMakerStreamEndpoint):
        """LLMeter's streaming endpoint, sending InferenceComponentName as well."""

        @SageMakerBase.llmeter_invoke
        def invoke(self, payload: dict) -> Any:
            return self._sagemaker_runtime.invoke_endpoint_with_response_stream(
                EndpointName=self.endpoint_name, InferenceComponentName=COMPONENT,
                Body=json.dumps(payload), ContentType="application/json")

    return ComponentStreamEndpoint(ENDPOINT, model_id="meta-llama/Llama-2-7b-chat-hf")


def llmeter_level(endpoint: Any, payload: dict[str, Any], level: int
                  ) -> tuple[dict[str, Any], float]:
    """One level with LLMeter's Runner; returns per-request aggregates and the CPU seconds."""
    from llmeter.runner import Runner

    runner = Runner(endpoint=endpoint, disable_per_client_progress_bar=True,
                    disable_clients_progress_bar=True)
    cpu = time.process_time()
    wall = time.perf_counter()
    result = asyncio.run(runner.run(payload=payload, clients=level, n_requests=2, timeout=120))
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    ok = [r for r in result.responses if r.error is None and r.time_to_first_token is not None]
    ttfts = [r.time_to_first_token for r in ok]
    rates = [(r.num_tokens_output - 1) / (r.time_to_last_token - r.time_to_first_token)
             for r in ok if r.num_tokens_output and r.num_tokens_output > 1
             and r.time_to_last_token > r.time_to_first_token]
    tokens = sum(r.num_tokens_output or 0 for r in ok)
    return {
        "requests": len(result.responses),
        "errors": len(result.responses) - len(ok),
        "ttft_p50_s": percentile(ttfts, 50) if ttfts else None,
        "ttft_p95_s": percentile(ttfts, 95) if ttfts else None,
        "stream_tok_s_p50": percentile(rates, 50) if rates else None,
        "total_tok_s": tokens / wall if wall > 0 else 0.0,
    }, cpu


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value * 1000:.1f}"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=parse_levels, default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--copy-concurrency", type=int, default=4,
                        help="streams one copy decodes together (default 4)")
    parser.add_argument("--copy-ttft", type=float, default=0.05,
                        help="seconds to the first token of each stream on a copy")
    parser.add_argument("--copy-tokens-per-s", type=float, default=100.0,
                        help="tokens/s of each stream on a copy")
    parser.add_argument("--time-scale", type=float, default=60.0,
                        help="simulated seconds per real second (endpoint and copy start-up)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0."""
    args = build_parser().parse_args(argv)
    from common.bench import build_request_payload
    from common.capacity import capacity_table, choose_target, plot_capacity
    from common.presets import get_preset

    preset = get_preset("7b", "tgi")
    options = {"endpoint_delay_s": 30.0, "ttft_s": 0.0, "tokens_per_s": 0.0,
               "time_scale": args.time_scale, "copy_concurrency": args.copy_concurrency,
               "copy_ttft_s": args.copy_ttft, "copy_tokens_per_s": args.copy_tokens_per_s}
    process, conn, _ = start_stand_in(options)
    try:
        deploy(preset)
        payload = build_request_payload("Write a short launch email for the AnyCloud Internet "
                                        "Service.", "tgi", args.max_new_tokens)
        endpoint = _llmeter_endpoint()
        reports, rows = [], []
        runner = LoadRunner(ENDPOINT, payload, max_concurrency=max(args.levels),
                            container="tgi", inference_component=COMPONENT)
        with runner:
            for level in args.levels:
                report, our_cpu = ours(runner, level)
                theirs, their_cpu = llmeter_level(endpoint, payload, level)
                reports.append(report)
                rows.append({
                    "streams": level,
                    "ours_ttft_p50_ms": _ms(report.ttft_p50_s),
                    "llmeter_ttft_p50_ms": _ms(theirs["ttft_p50_s"]),
                    "ours_ttft_p95_ms": _ms(report.ttft_p95_s),
                    "llmeter_ttft_p95_ms": _ms(theirs["ttft_p95_s"]),
                    "ours_stream_tok_s": _num(report.stream_tokens_per_s_p50),
                    "llmeter_stream_tok_s": _num(theirs["stream_tok_s_p50"]),
                    "ours_total_tok_s": _num(report.total_tokens_per_s),
                    "llmeter_total_tok_s": _num(theirs["total_tok_s"]),
                    "ours_cpu_ms_per_stream": f"{our_cpu / report.requests * 1000:.1f}",
                    "llmeter_cpu_ms_per_stream":
                        f"{their_cpu / max(1, theirs['requests']) * 1000:.1f}",
                    "errors_ours/llmeter": f"{report.errors}/{theirs['errors']}",
                })
                print(f"{level} streams done", file=sys.stderr)
        target = choose_target(reports)
        price = preset.instance.approx_usd_per_hour
        capacity = capacity_table(reports, price)
        import matplotlib

        matplotlib.use("Agg")
        figure = plot_capacity(reports, target=target,
                               title=f"One copy, {args.copy_concurrency} streams decoded together"
                                     " (stand-in)")
        RESULTS.mkdir(parents=True, exist_ok=True)
        figure.savefig(RESULTS / "scale_sweep.png", dpi=110)
    finally:
        conn.send("stop")
        events = conn.recv() if conn.poll(30) else []
        process.join(30)
    lines = [
        f"Command: `{command_line()}`",
        f"Machine: {machine()}",
        f"Stand-in: one copy decodes {args.copy_concurrency} streams together at "
        f"{args.copy_tokens_per_s:g} tokens/s each, first token after {args.copy_ttft:g} s; "
        f"the rest queue. Clock {args.time_scale:g}x. {len(events)} scaling events.",
        "Both tools ran against the same endpoint and component, one after the other at each "
        "level; p50/p95 are computed the same way from each tool's own per-request timings. "
        "LLMeter 0.2.0 counts every token text it decodes (the `</s>` too), ours only the "
        "text tokens. CPU is this process (client only; the stand-in runs in its own).",
        "",
        "Capacity of one copy (our sweep), cost at ml.g5.2xlarge's approximate price:",
        "",
        capacity,
        "",
        target.reason,
    ]
    print()
    print(markdown_table(rows))
    print("\n".join(lines))
    write_rows_csv(rows, RESULTS / "scale_sweep.csv")
    (RESULTS / "scale_sweep.md").write_text("\n".join([markdown_table(rows), "", *lines]) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
