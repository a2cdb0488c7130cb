"""The load tool on asyncio: the level runner, running from inside a loop (Jupyter), and the
CLI and ``run_sweep`` end to end against the stand-in."""

from __future__ import annotations

import asyncio
import io

import pytest
import stream_samples as ss
from test_aio_end_to_end import PAYLOAD, endpoint  # noqa: F401  (the module's fixture)

from common import bench
from common.errors import ModelStreamError, ThrottledError
from common.streaming import aiter_tokens

EVENTS = ss.line_events(ss.tgi_sse([ss.Token("a", 1), ss.Token("b", 2), ss.EOS]).data)


def test_arun_level_keeps_the_concurrency_and_counts_every_failure():
    open_now = {"now": 0, "most": 0}
    calls = []

    class Body(ss.FakeAioEventStream):
        async def _generate(self):
            open_now["now"] += 1
            open_now["most"] = max(open_now["most"], open_now["now"])
            try:
                for event in self.events:
                    await asyncio.sleep(0)
                    yield event
                if self.error is not None:
                    raise self.error
            finally:
                open_now["now"] -= 1

    async def invoke():
        calls.append(1)
        if len(calls) == 3:
            raise ThrottledError("ThrottlingException: busy (gave up after 4 attempts)")
        error = ModelStreamError("ModelStreamError: broke") if len(calls) == 5 else None
        return aiter_tokens(Body(EVENTS, error))

    done = []
    report = asyncio.run(bench.arun_level(invoke, 3, 9, progress=done.append))
    assert (report.concurrency, report.requests, report.errors) == (3, 9, 2)
    assert open_now["most"] == 3 and open_now["now"] == 0
    assert done == [1] * 9
    assert any("ThrottledError" in m for m in report.error_messages)
    assert any("ModelStreamError" in m for m in report.error_messages)
    assert report.ttft_p50_s is not None and report.total_tokens_per_s > 0


def test_run_coroutine_works_with_and_without_a_running_loop():
    async def answer():
        await asyncio.sleep(0)
        return 42

    assert bench.run_coroutine(answer()) == 42

    async def inside_a_kernel():  # Jupyter's loop is running: the load gets its own thread
        return bench.run_coroutine(answer())

    assert asyncio.run(inside_a_kernel()) == 42


def test_run_sweep_checks_its_arguments_before_sending():
    with pytest.raises(ValueError, match="positive"):
        bench.run_sweep("ep", PAYLOAD, [])
    with pytest.raises(ValueError, match="positive"):
        bench.run_sweep("ep", PAYLOAD, [2, 0])
    with pytest.raises(ValueError, match="requests_per_level"):
        bench.run_sweep("ep", PAYLOAD, [1], requests_per_level=0)


def test_run_sweep_against_the_stand_in_also_from_inside_a_running_loop(endpoint, request_log):  # noqa: F811
    done = []
    reports = bench.run_sweep(endpoint, PAYLOAD, [1, 4], container="tgi",
                              progress=done.append)
    assert [(r.concurrency, r.requests, r.errors) for r in reports] == [(1, 2, 0), (4, 8, 0)]
    assert len(done) == 10 and len(request_log()) == 10

    async def in_a_kernel():
        return bench.run_sweep(endpoint, PAYLOAD, [2], requests_per_level=3,
                               inference_component="ic-1", progress=False)

    [report] = asyncio.run(in_a_kernel())
    # A plain endpoint refuses a component name, as SageMaker does; the header still arrived.
    assert (report.requests, report.errors) == (3, 3)
    assert "leave inference_component" in report.error_messages[0]
    sent = [{k.lower(): v for k, v in r["headers"].items()} for r in request_log()[10:]]
    assert [h.get("x-amzn-sagemaker-inference-component") for h in sent] == ["ic-1"] * 3


@pytest.mark.parametrize("engine", bench.ENGINES)
def test_the_command_line_on_both_engines(endpoint, engine, tmp_path):  # noqa: F811
    out = io.StringIO()
    argv = ["--endpoint", endpoint, "--container", "tgi", "--concurrency", "1,3",
            "--max-new-tokens", "16", "--no-progress", "--engine", engine,
            "--csv", str(tmp_path / "load.csv")]
    reports = bench.run(bench.build_parser().parse_args(argv), out=out)
    assert [(r.concurrency, r.requests, r.errors) for r in reports] == [(1, 2, 0), (3, 6, 0)]
    assert "| concurrency |" in out.getvalue()
    assert (tmp_path / "load.csv").read_text().startswith("concurrency,requests,errors")
    assert bench.main([*argv[:-2], "--requests", "1"]) == 0


def test_the_new_flags_parse():
    args = bench.build_parser().parse_args(["--endpoint", "e", "--inference-component", "ic"])
    assert (args.inference_component, args.engine) == ("ic", "asyncio")
    with pytest.raises(SystemExit):
        bench.build_parser().parse_args(["--endpoint", "e", "--engine", "greenlets"])
