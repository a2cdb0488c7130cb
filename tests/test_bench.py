"""The load tool on asyncio: the level runner, running from inside a loop (Jupyter), and the
CLI and ``run_sweep`` end to end against the stand-in."""

from __future__ import annotations

import asyncio
import io

import pytest
import stream_samples as ss
from test_aio_end_to_end import PAYLOAD

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


def test_run_sweep_against_the_stand_in_also_from_inside_a_running_loop(endpoint, request_log):
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
def test_the_command_line_on_both_engines(endpoint, engine, tmp_path):
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


def test_run_sweep_keeps_one_loop_and_one_client_across_levels(endpoint, monkeypatch):
    from common import aio

    opened, loops = [], []
    real = aio.async_runtime_client

    def counting_client(*args, **kwargs):
        opened.append(kwargs.get("max_pool_connections"))
        return real(*args, **kwargs)

    monkeypatch.setattr(aio, "async_runtime_client", counting_client)
    reports = bench.run_sweep(endpoint, PAYLOAD, [1, 3, 2], container="tgi",
                              progress=lambda _: loops.append(asyncio.get_running_loop()))
    assert [(r.concurrency, r.requests, r.errors) for r in reports] == [(1, 2, 0), (3, 6, 0),
                                                                       (2, 4, 0)]
    assert opened == [10]  # one client, its pool sized for the busiest level (at least 10)
    assert len(loops) == 12 and len(set(map(id, loops))) == 1
    results = [result for report in reports for result in report.results]
    assert len({result.request_id for result in results}) == 12
    assert all(result.started_s is not None and result.metrics.ttft_s > 0 for result in results)


def test_the_busiest_level_sizes_the_pool_and_levels_stay_within_it(endpoint, monkeypatch):
    with bench.LoadRunner(endpoint, PAYLOAD, max_concurrency=12, container="tgi") as runner:
        assert runner.client._endpoint.http_session._max_pool_connections == 12
        loop = runner.loop
        first = runner.level(2, 2)
        second = runner.level(1)
        assert runner.loop is loop
        with pytest.raises(ValueError, match="max_concurrency"):
            runner.level(13)
    assert (first.requests, second.requests, first.errors + second.errors) == (2, 2, 0)
    assert runner.loop is None and loop.is_closed()
    with pytest.raises(RuntimeError, match="with LoadRunner"):
        runner.level(1)


def test_tokens_are_timed_by_when_their_bytes_arrived():
    from common.aio import OpenStream, ResponseFrames

    clock = iter([10.0, 10.5, 11.0, 11.5, 12.0, 12.5])  # a reading per event handed out

    async def invoke():
        frames = ResponseFrames(ss.FakeAioEventStream(EVENTS), clock=lambda: next(clock))
        return OpenStream(aiter_tokens(frames), frames, "req-1")

    report = asyncio.run(bench.arun_level(invoke, 1, 1))
    [result] = report.results
    assert result.request_id == "req-1"
    # "a" is complete with the second event (the SSE blank line): its bytes' arrival stamp,
    # minus the send time, whatever the decoding cost; the end is the last bytes' arrival
    assert result.metrics.ttft_s == pytest.approx(10.5 - result.started_s)
    assert result.metrics.total_s == pytest.approx(12.5 - result.started_s)
    rows = bench.request_rows([report])
    assert rows[0]["request_id"] == "req-1" and rows[0]["tokens"] == 2


def test_connections_are_opened_before_the_first_request(endpoint, request_log):
    from common.aio import aopen_stream, async_runtime_client, open_connections

    async def run():
        async with async_runtime_client(max_pool_connections=4) as client:
            http = client._endpoint.http_session
            assert http._sessions, "the aiohttp session is built when the client opens"
            assert http._verify is False  # the stand-in is plain http: no CA bundle loaded
            before = len(request_log())
            assert await open_connections(client, 3) == 3
            assert len(request_log()) == before  # nothing was invoked
            [session] = http._sessions.values()
            idle = sum(len(c) for c in session.connector._conns.values())
            opened = await aopen_stream(client, endpoint, PAYLOAD, container="tgi")
            async with opened.tokens:
                text = "".join([t.text async for t in opened.tokens if not t.special])
            return idle, opened, text

    idle, opened, text = asyncio.run(run())
    assert idle == 3
    assert opened.frames.fast and opened.frames.arrived is not None and text
    assert opened.request_id == request_log()[-1]["request_id"]


def test_the_requests_csv_flag(endpoint, tmp_path):
    path = tmp_path / "requests.csv"
    bench.main(["--endpoint", endpoint, "--container", "tgi", "--concurrency", "2",
                "--max-new-tokens", "8", "--no-progress", "--requests-csv", str(path)])
    lines = path.read_text().splitlines()
    assert lines[0] == "concurrency,request_id,started_s,ttfb_ms,ttft_ms,tokens,total_ms,error"
    assert len(lines) == 5
