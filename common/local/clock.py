"""The stand-in's one clock: every simulated delay asks it.

Endpoint creation, instance provisioning, component start-up, metric periods, alarm
evaluation, cooldowns and idle release are all measured in *simulated seconds* on one clock,
so ``python -m common.local --time-scale 120`` makes two minutes of SageMaker happen in one
real second, and a test can run an hour of scaling in no real time at all with
:class:`ManualClock` (in the spirit of Trio's ``MockClock``: time moves only when told).

Token streaming is not on this clock: the reader watches tokens arrive in real time.

Both clocks are callables returning the simulated seconds since they started, so they fit
anywhere a ``time.monotonic``-like function is expected.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

__all__ = ["Clock", "ManualClock", "ScaledClock"]


class Clock:
    """The clock interface: simulated seconds, their wall-clock stamps, and waiting.

    Attributes:
        time_scale: simulated seconds per real second (``0`` for a manual clock, whose time
            moves only when advanced).
    """

    time_scale: float = 1.0

    def __init__(self, *, start_wall: datetime | None = None) -> None:
        self._start_wall = start_wall or datetime.now(UTC)

    def now(self) -> float:
        """Return the simulated seconds since the clock started."""
        raise NotImplementedError

    def __call__(self) -> float:
        return self.now()

    def wall(self, at: float | None = None) -> datetime:
        """Return the wall-clock time (UTC) of simulated second ``at`` (default: now).

        It is the real start time plus the simulated seconds, so at a time scale above 1
        the stand-in's timestamps (CloudWatch datapoints, scaling activities) run ahead of
        the real clock.
        """
        return self._start_wall + timedelta(seconds=self.now() if at is None else at)

    def real_seconds(self, simulated_s: float) -> float:
        """Return how many real seconds ``simulated_s`` simulated seconds take."""
        raise NotImplementedError

    def wait(self, simulated_s: float, stop: threading.Event | None = None) -> bool:
        """Wait ``simulated_s`` simulated seconds, or until ``stop`` is set.

        Returns:
            ``True`` when ``stop`` was set (the wait ended early), else ``False``.
        """
        raise NotImplementedError


class ScaledClock(Clock):
    """Simulated seconds = real elapsed seconds x ``time_scale``.

    Args:
        time_scale: simulated seconds per real second (> 0; 1 keeps real time).
        monotonic: the real clock (replaceable in tests).

    Raises:
        ValueError: ``time_scale`` is not positive.
    """

    def __init__(self, time_scale: float = 1.0, *, monotonic=time.monotonic,
                 start_wall: datetime | None = None) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        super().__init__(start_wall=start_wall)
        self.time_scale = float(time_scale)
        self._monotonic = monotonic
        self._start = monotonic()

    def now(self) -> float:
        """Return the simulated seconds since the clock started."""
        return (self._monotonic() - self._start) * self.time_scale

    def real_seconds(self, simulated_s: float) -> float:
        """Return the real seconds that ``simulated_s`` simulated seconds take."""
        return max(0.0, simulated_s) / self.time_scale

    def wait(self, simulated_s: float, stop: threading.Event | None = None) -> bool:
        """Sleep the real equivalent of ``simulated_s``; ``True`` when ``stop`` ended it."""
        seconds = self.real_seconds(simulated_s)
        if stop is None:
            time.sleep(seconds)
            return False
        return stop.wait(seconds)

    def __repr__(self) -> str:
        return f"ScaledClock(time_scale={self.time_scale:g})"


class ManualClock(Clock):
    """A clock that moves only when :meth:`advance` (or :meth:`set`) is called.

    For tests: hand-computed timelines are checked by advancing it step by step. Waiting on
    it returns at once once the time has been advanced past the deadline by another thread,
    or when ``stop`` is set.
    """

    time_scale = 0.0

    def __init__(self, start: float = 0.0, *, start_wall: datetime | None = None) -> None:
        super().__init__(start_wall=start_wall)
        self._now = float(start)
        self._changed = threading.Condition()

    def now(self) -> float:
        """Return the simulated seconds the clock has been advanced to."""
        with self._changed:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (>= 0); return the new time.

        Raises:
            ValueError: ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError(f"a clock cannot go back: advance({seconds})")
        with self._changed:
            self._now += seconds
            self._changed.notify_all()
            return self._now

    def set(self, now: float) -> float:
        """Move the clock forward to ``now``; return it.

        Raises:
            ValueError: ``now`` is earlier than the current time.
        """
        return self.advance(now - self.now())

    def real_seconds(self, simulated_s: float) -> float:
        """Always ``0``: manual time does not pass by itself."""
        return 0.0

    def wait(self, simulated_s: float, stop: threading.Event | None = None) -> bool:
        """Block until the clock is advanced ``simulated_s`` past now, or ``stop`` is set."""
        with self._changed:
            deadline = self._now + simulated_s
            while self._now < deadline:
                if stop is not None and stop.is_set():
                    return True
                self._changed.wait(0.05)
        return bool(stop is not None and stop.is_set())

    def __repr__(self) -> str:
        return f"ManualClock(now={self.now():g})"
