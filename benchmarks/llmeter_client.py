"""LLMeter's side of ``bench_vs_llmeter.py``: one LLMeter 0.2.0 run, as its own process.

Run by ``benchmarks/bench_vs_llmeter.py`` (not meant to be run alone)::

    python benchmarks/llmeter_client.py --endpoint NAME --clients 8 --requests-per-client 2 \\
        --payload payload.json --out responses.json

It does what an LLMeter user does -- ``SageMakerStreamEndpoint`` (boto3) and ``Runner``
with ``clients`` threads, each sending ``requests-per-client`` requests of the given payload
-- and writes each response's id (the ``x-amzn-RequestId``), LLMeter's own time to first
token, and its error to ``--out``. It imports nothing from this project, so the process's
CPU time is LLMeter's (and the interpreter's) alone; the AWS environment (the stand-in's
endpoint URL, dummy credentials) comes from the parent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path


def main() -> int:
    """Run LLMeter once; write one record per response; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--region", default=None)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--requests-per-client", type=int, required=True)
    parser.add_argument("--payload", type=Path, required=True, help="the request body (JSON)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from llmeter.endpoints.sagemaker import SageMakerStreamEndpoint
    from llmeter.runner import Runner

    endpoint = SageMakerStreamEndpoint(args.endpoint, model_id="meta-llama/Llama-2-7b-chat-hf",
                                       region=args.region)
    runner = Runner(endpoint=endpoint, disable_per_client_progress_bar=True,
                    disable_clients_progress_bar=True)
    result = asyncio.run(runner.run(payload=json.loads(args.payload.read_text()),
                                    clients=args.clients, n_requests=args.requests_per_client,
                                    timeout=120))
    records = [{"request_id": response.id, "ttft_s": response.time_to_first_token,
                "error": response.error} for response in result.responses]
    args.out.write_text(json.dumps(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
