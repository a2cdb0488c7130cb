"""The stand-in's one clock: scaled real time, and a manual clock for tests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from common.local.clock import ManualClock, ScaledClock


def test_a_scaled_clock_multiplies_real_elapsed_time():
    now = [100.0]
    clock = ScaledClock(120, monotonic=lambda: now[0])
    assert clock.now() == 0.0
    now[0] = 100.5
    assert clock() == 60.0
    assert clock.real_seconds(600) == 5.0


def test_a_scaled_clock_stamps_simulated_wall_time():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    now = [0.0]
    clock = ScaledClock(60, monotonic=lambda: now[0], start_wall=start)
    now[0] = 2.0
    assert clock.wall() == start + timedelta(minutes=2)
    assert clock.wall(30) == start + timedelta(seconds=30)


def test_a_time_scale_must_be_positive():
    with pytest.raises(ValueError, match="time_scale must be > 0"):
        ScaledClock(0)


def test_a_manual_clock_moves_only_when_advanced():
    clock = ManualClock()
    assert clock.now() == 0.0
    assert clock.advance(10) == 10.0
    assert clock.set(25) == 25.0
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1)


def test_waiting_on_a_manual_clock_ends_when_another_thread_advances_it():
    clock = ManualClock()
    done = threading.Event()

    def waiter() -> None:
        clock.wait(30)
        done.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    assert not done.wait(0.1)
    clock.advance(30)
    thread.join(5)
    assert done.is_set()


def test_a_stop_event_ends_a_wait():
    stop = threading.Event()
    stop.set()
    assert ScaledClock(1).wait(60, stop) is True
    assert ManualClock().wait(60, stop) is True
