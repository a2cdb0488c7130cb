"""Capacity and cost of one inference-component copy, from a concurrency sweep.

:func:`common.bench.run_sweep` measures one copy at rising concurrency and returns one
:class:`~common.bench.LevelReport` per level. This module turns those reports into what a
reader decides with:

* :func:`cost_per_million_tokens` -- dollars per 1M output tokens at a measured throughput;
* :func:`capacity_rows` / :func:`capacity_table` -- the sweep as a table with that cost;
* :func:`choose_target` -- the highest concurrency per copy whose TTFT p95 stays within a
  limit (default: twice the single-stream TTFT), with the reason in words: the target value
  of the target-tracking policy;
* :func:`plot_capacity` -- TTFT and throughput against concurrency, the target marked;
* :func:`idle_cost_per_day` -- what an idle endpoint costs a day with and without scale-to-zero.

Prices are the presets' approximate on-demand figures (us-east-1); a notebook says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from common.bench import LevelReport

__all__ = [
    "DEFAULT_TTFT_FACTOR",
    "IdleCost",
    "MarkdownTable",
    "TargetChoice",
    "capacity_rows",
    "capacity_table",
    "choose_target",
    "cost_per_million_tokens",
    "idle_cost_per_day",
    "plot_capacity",
]

DEFAULT_TTFT_FACTOR = 2.0
"""Default TTFT limit of :func:`choose_target`: this many times the single-stream TTFT p95."""


def cost_per_million_tokens(tokens_per_s: float | None, price_per_hour: float | None,
                            *, instances: float = 1.0) -> float | None:
    """Return the dollars per 1M output tokens of ``instances`` instances at ``tokens_per_s``.

    ``price_per_hour * instances / (tokens_per_s * 3600) * 1e6``; ``None`` when the price is
    unknown or nothing was generated.

    Raises:
        ValueError: for a negative price, throughput or instance count.
    """
    for name, value in (("tokens_per_s", tokens_per_s), ("price_per_hour", price_per_hour),
                        ("instances", instances)):
        if value is not None and value < 0:
            raise ValueError(f"{name} must be >= 0, not {value!r}")
    if price_per_hour is None or not tokens_per_s:
        return None
    return price_per_hour * instances / (tokens_per_s * 3600.0) * 1_000_000


def capacity_rows(reports: Sequence[LevelReport], price_per_hour: float | None, *,
                  instances_per_copy: float = 1.0) -> list[dict[str, Any]]:
    """Return the sweep as table rows (times in ms), with the cost per 1M output tokens.

    Args:
        reports: the sweep's reports, one per concurrency level.
        price_per_hour: the instance's hourly price (``None``: the cost column stays empty).
        instances_per_copy: the share of an instance one copy occupies (1 when a copy takes
            every GPU of its instance, 0.25 for one of four copies).
    """
    rows = []
    for report in reports:
        row = report.row()
        row.pop("wall_s", None)
        cost = cost_per_million_tokens(report.total_tokens_per_s, price_per_hour,
                                       instances=instances_per_copy)
        row["usd_per_1m_tokens"] = "" if cost is None else f"{cost:.2f}"
        rows.append(row)
    return rows


class MarkdownTable(str):
    """A Markdown table that shows as a table where it is displayed: rendered in Jupyter
    (``_repr_markdown_``), as its plain text in a terminal or a headless run (rather than a
    quoted string, or ``<IPython.core.display.Markdown object>``). It is a ``str``."""

    def _repr_markdown_(self) -> str:
        return str(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def capacity_table(reports: Sequence[LevelReport], price_per_hour: float | None, *,
                   instances_per_copy: float = 1.0) -> MarkdownTable:
    """Return :func:`capacity_rows` as a Markdown table (a ``str``; as a cell's last
    expression it renders in Jupyter and prints as text elsewhere)."""
    from common.bench import markdown_table

    return MarkdownTable(markdown_table(capacity_rows(reports, price_per_hour,
                                                      instances_per_copy=instances_per_copy)))


@dataclass(frozen=True)
class TargetChoice:
    """The concurrency per copy chosen from a sweep, and why.

    Attributes:
        concurrency: the chosen streams per copy (the target-tracking ``TargetValue``).
        ttft_limit_s: the TTFT p95 limit it was chosen against.
        ttft_p95_s: the chosen level's TTFT p95.
        reason: one sentence that says how it was chosen.
    """

    concurrency: int
    ttft_limit_s: float
    ttft_p95_s: float
    reason: str


def choose_target(reports: Sequence[LevelReport], *, ttft_limit_s: float | None = None,
                  factor: float = DEFAULT_TTFT_FACTOR) -> TargetChoice:
    """Pick the highest concurrency per copy whose TTFT p95 stays within a limit.

    Levels with errors are never chosen. Without ``ttft_limit_s`` the limit is ``factor``
    times the TTFT p95 of the lowest level (the single stream, when the sweep starts at 1).

    Raises:
        ValueError: when no level has a TTFT (every request failed), when even the lowest
            level is over an explicit limit (the message gives its TTFT, so the reader can
            raise the limit), or for a limit or factor that is not positive.
    """
    if factor <= 0:
        raise ValueError(f"factor must be > 0, not {factor!r}")
    if ttft_limit_s is not None and ttft_limit_s <= 0:
        raise ValueError(f"ttft_limit_s must be > 0 seconds, not {ttft_limit_s!r}")
    measured = sorted((r for r in reports if r.ttft_p95_s is not None),
                      key=lambda r: r.concurrency)
    if not measured:
        raise ValueError("No level of the sweep measured a time to first token (every request "
                         "failed?): read the errors in its table and run it again.")
    base = measured[0]
    assert base.ttft_p95_s is not None
    if ttft_limit_s is None:
        limit = factor * base.ttft_p95_s
        how = (f"{factor:g} x the TTFT p95 at {base.concurrency} stream"
               f"{'s' if base.concurrency != 1 else ''} ({base.ttft_p95_s * 1000:.0f} ms)")
    else:
        limit = ttft_limit_s
        how = "the limit you set"
    fits = [r for r in measured if not r.errors and r.ttft_p95_s is not None
            and r.ttft_p95_s <= limit]
    if not fits:
        raise ValueError(
            f"No level kept TTFT p95 within {limit * 1000:.0f} ms ({how}) without errors; the "
            f"lowest level measured {base.ttft_p95_s * 1000:.0f} ms. Raise TTFT_LIMIT_S, or "
            "use a larger instance type.")
    best = max(fits, key=lambda r: r.concurrency)
    assert best.ttft_p95_s is not None
    above = [r for r in measured if r.concurrency > best.concurrency]
    beyond = ""
    if above:
        nxt = above[0]
        why = (f"{nxt.errors} error(s)" if nxt.errors
               else f"TTFT p95 {(nxt.ttft_p95_s or 0) * 1000:.0f} ms")
        beyond = f"; at {nxt.concurrency} streams it was {why}"
    else:
        beyond = "; it is the highest level measured, so the copy may hold more"
    reason = (f"Target {best.concurrency} concurrent streams per copy: the highest level whose "
              f"TTFT p95 ({best.ttft_p95_s * 1000:.0f} ms) stays within {limit * 1000:.0f} ms "
              f"({how}){beyond}.")
    return TargetChoice(best.concurrency, limit, best.ttft_p95_s, reason)


def plot_capacity(reports: Sequence[LevelReport], *, target: TargetChoice | None = None,
                  title: str = "One copy under rising concurrency") -> Any:
    """Draw TTFT p50/p95 (left) and tokens/s per stream and in total (right) per level.

    The TTFT limit and the chosen target are marked when ``target`` is given.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ValueError: when ``reports`` is empty.
        ImportError: when matplotlib is not installed.
    """
    if not reports:
        raise ValueError("reports is empty: run the sweep first")
    import matplotlib.pyplot as plt

    levels = [r.concurrency for r in reports]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(levels, [(r.ttft_p50_s or 0) * 1000 for r in reports], "o-", label="TTFT p50")
    left.plot(levels, [(r.ttft_p95_s or 0) * 1000 for r in reports], "s--", label="TTFT p95")
    if target is not None:
        left.axhline(target.ttft_limit_s * 1000, color="grey", linestyle=":",
                     label="TTFT limit")
        left.axvline(target.concurrency, color="green", alpha=0.4,
                     label=f"target {target.concurrency}")
    left.set_xscale("log", base=2)
    left.set_xticks(levels, [str(level) for level in levels])
    left.set_xlabel("concurrent streams on one copy")
    left.set_ylabel("time to first token (ms)")
    left.legend(fontsize="small")
    right.plot(levels, [r.stream_tokens_per_s_p50 or 0 for r in reports], "o-",
               label="per stream (p50)")
    right.set_ylim(bottom=0)
    right.set_ylabel("tokens/s per stream")
    twin = right.twinx()
    twin.plot(levels, [r.total_tokens_per_s for r in reports], "s--", color="tab:orange",
              label="total")
    twin.set_ylim(bottom=0)
    twin.set_ylabel("tokens/s in total")
    right.set_xscale("log", base=2)
    right.set_xticks(levels, [str(level) for level in levels])
    right.set_xlabel("concurrent streams on one copy")
    handles = right.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    right.legend(handles[0] + more[0], handles[1] + more[1], fontsize="small", loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class IdleCost:
    """What an idle endpoint costs per day.

    Attributes:
        with_scale_to_zero: dollars per idle day once copies and instances are at zero.
        without_scale_to_zero: dollars per idle day with ``min_instances`` kept running.
        min_instances: the instances kept without scale-to-zero.
        price_per_hour: the instance's hourly price.
    """

    with_scale_to_zero: float
    without_scale_to_zero: float
    min_instances: int
    price_per_hour: float

    def summary(self) -> str:
        """Return the comparison in one line."""
        return (f"Idle for a day: ${self.without_scale_to_zero:,.2f} with {self.min_instances} "
                f"instance{'s' if self.min_instances != 1 else ''} kept running, "
                f"${self.with_scale_to_zero:,.2f} with scale-to-zero "
                f"(${self.price_per_hour:.2f} per instance-hour).")


def idle_cost_per_day(price_per_hour: float | None, *, min_instances: int = 1) -> IdleCost:
    """Return the idle cost per day with scale-to-zero (0) and with ``min_instances`` kept.

    Raises:
        ValueError: when the price is unknown or negative, or ``min_instances`` < 1.
    """
    if price_per_hour is None or price_per_hour < 0:
        raise ValueError(f"price_per_hour must be a known price >= 0, not {price_per_hour!r}: "
                         "look it up on https://aws.amazon.com/sagemaker/pricing/")
    if min_instances < 1:
        raise ValueError(f"min_instances must be >= 1 (the alternative to zero), not "
                         f"{min_instances!r}")
    return IdleCost(0.0, price_per_hour * 24 * min_instances, min_instances, price_per_hour)
