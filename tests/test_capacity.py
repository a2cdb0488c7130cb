"""Capacity, cost and the target choice from a sweep's reports; the presets' scaling settings."""

from __future__ import annotations

import pytest

import common
from common.bench import LevelReport
from common.capacity import (
    capacity_rows,
    capacity_table,
    choose_target,
    cost_per_million_tokens,
    idle_cost_per_day,
    plot_capacity,
)
from common.errors import PresetError
from common.local.components import memory_pool_mb
from common.presets import MEMORY_PER_COPY_MB, PRESETS, get_preset, scaling_settings


def _report(level, ttft_p95, tokens_per_s, errors=0):
    return LevelReport(
        concurrency=level, requests=2 * level, errors=errors, wall_s=10.0,
        ttft_p50_s=ttft_p95 * 0.8, ttft_p95_s=ttft_p95, itl_p50_s=0.016, itl_p95_s=0.02,
        stream_tokens_per_s_p50=60.0, stream_tokens_per_s_min=55.0,
        total_tokens_per_s=tokens_per_s)


SWEEP = [_report(1, 0.060, 60), _report(2, 0.062, 120), _report(4, 0.070, 240),
         _report(8, 0.110, 470), _report(16, 0.350, 500), _report(32, 0.900, 510)]


def test_cost_per_million_tokens_is_the_hourly_price_over_tokens_per_hour():
    # $1.52/h at 500 tokens/s: 1.8M tokens per hour -> $0.8444 per 1M.
    assert cost_per_million_tokens(500, 1.52) == pytest.approx(1.52 / 1.8)
    assert cost_per_million_tokens(500, 1.52, instances=0.25) == pytest.approx(1.52 / 1.8 / 4)
    assert cost_per_million_tokens(0, 1.52) is None
    assert cost_per_million_tokens(500, None) is None
    with pytest.raises(ValueError, match="price_per_hour"):
        cost_per_million_tokens(500, -1)


def test_the_target_is_the_highest_level_within_twice_the_single_stream_ttft():
    target = choose_target(SWEEP)
    assert target.concurrency == 8
    assert target.ttft_limit_s == pytest.approx(0.120)
    assert target.reason == (
        "Target 8 concurrent streams per copy: the highest level whose TTFT p95 (110 ms) stays "
        "within 120 ms (2 x the TTFT p95 at 1 stream (60 ms)); at 16 streams it was TTFT p95 "
        "350 ms.")


def test_a_reader_set_limit_and_errors_count():
    assert choose_target(SWEEP, ttft_limit_s=0.4).concurrency == 16
    with_errors = [*SWEEP[:3], _report(8, 0.1, 400, errors=2), *SWEEP[4:]]
    target = choose_target(with_errors)
    assert target.concurrency == 4 and "at 8 streams it was 2 error(s)" in target.reason
    assert "highest level measured" in choose_target(SWEEP, ttft_limit_s=5).reason


def test_no_level_within_the_limit_says_how_to_fix_it():
    with pytest.raises(ValueError, match="Raise TTFT_LIMIT_S"):
        choose_target(SWEEP, ttft_limit_s=0.01)
    failed = LevelReport(1, 2, 2, 1.0, None, None, None, None, None, None, 0.0)
    with pytest.raises(ValueError, match="every request"):
        choose_target([failed])
    with pytest.raises(ValueError, match="ttft_limit_s"):
        choose_target(SWEEP, ttft_limit_s=0)


def test_the_table_adds_the_cost_column():
    rows = capacity_rows(SWEEP, 1.52)
    assert rows[0]["usd_per_1m_tokens"] == f"{1.52 / (60 * 3600) * 1e6:.2f}"
    assert "wall_s" not in rows[0] and rows[3]["ttft_p95_ms"] == "110.0"
    assert capacity_rows(SWEEP, None)[0]["usd_per_1m_tokens"] == ""
    table = capacity_table(SWEEP, 1.52)
    assert table.splitlines()[0].startswith("| concurrency |") and "usd_per_1m_tokens" in table
    # As a cell's last expression: rendered in Jupyter, the table itself as plain text.
    from IPython.core.formatters import DisplayFormatter

    shown, _ = DisplayFormatter().format(table)
    assert shown["text/markdown"] == shown["text/plain"] == str(table)


def test_idle_cost_with_and_without_scale_to_zero():
    idle = idle_cost_per_day(1.52)
    assert (idle.with_scale_to_zero, idle.without_scale_to_zero) == (0.0, pytest.approx(36.48))
    assert idle.summary() == ("Idle for a day: $36.48 with 1 instance kept running, $0.00 with "
                              "scale-to-zero ($1.52 per instance-hour).")
    with pytest.raises(ValueError, match="pricing"):
        idle_cost_per_day(None)


def test_the_chart_marks_the_target():
    import matplotlib

    matplotlib.use("Agg")
    figure = plot_capacity(SWEEP, target=choose_target(SWEEP))
    left, right = figure.axes[:2]
    assert "target 8" in [t.get_text() for t in left.get_legend().get_texts()]
    assert right.get_ylabel() == "tokens/s per stream"
    with pytest.raises(ValueError):
        plot_capacity([])


# --------------------------------------------------------------------------- presets


def test_scaling_settings_follow_the_preset():
    seven = scaling_settings(get_preset("7b", "tgi"))
    assert (seven.min_instances, seven.max_instances, seven.accelerators_per_copy) == (0, 4, 1)
    # The SDK's 1,024 MB reservation, not a share of host memory (issue 18).
    assert seven.memory_per_copy_mb == MEMORY_PER_COPY_MB == 1024 and seven.max_copies == 4
    seventy = scaling_settings(get_preset("70b", "lmi"), max_instances=3)
    assert (seventy.accelerators_per_copy, seventy.max_copies) == (8, 3)
    for preset in PRESETS.values():
        settings = scaling_settings(preset)
        assert settings.accelerators_per_copy == preset.num_gpus
        assert settings.memory_per_copy_mb >= 128  # MinMemoryRequiredInMb's minimum
        # Every copy an instance holds fits the memory SageMaker lets copies reserve there
        # (the stand-in's pool, well below host memory).
        assert (settings.memory_per_copy_mb * settings.copies_per_instance
                <= memory_pool_mb(preset.instance_type) < preset.instance.memory_gib * 1024)
        assert settings.copy_concurrency == preset.max_rolling_batch_size
    assert "0 to 4" in seven.describe()
    with pytest.raises(PresetError, match="max_instances"):
        scaling_settings(get_preset("7b", "tgi"), max_instances=0)


def test_the_public_names_are_exported():
    for name in ("scaling_settings", "wait_for_inference_component", "watch_scaling",
                 "BackgroundLoad", "delete_scaling_resources", "choose_target",
                 "capacity_table", "plot_capacity", "idle_cost_per_day", "NoCapacityError",
                 "cost_per_million_tokens"):
        assert name in common.__all__ and hasattr(common, name)
