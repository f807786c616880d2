"""SIGTERM as a scheduler means it: stop at the next safe point, with the checkpoint saved, and exit.

A batch system (SLURM at a time limit or on preemption, `docker stop`, Kubernetes) sends SIGTERM and,
a grace period later (SLURM's KillWait, 30 s by default), SIGKILL. Raising at once, wherever the
signal lands, throws away the epoch in progress and can cut a storage write in half. So while a
final-phase item trains (`deferred()`), SIGTERM only records the request; the training loop asks at
every step (`at_step`) and after every epoch's checkpoint (`at_epoch_end`):

- after an epoch: its checkpoint is on disk, so the run stops there;
- at a step: the run finishes the epoch when the rest of it should take less than `stop_within_s()`
  seconds ($ABLATE_STOP_WITHIN_S, default 20: inside SLURM's default KillWait); otherwise it stops
  at once and the item resumes from the previous epoch's checkpoint.

Stopping raises `Terminated` (a KeyboardInterrupt): the work queue marks the trial for a re-run and
`ablate` exits 143. Outside `deferred()` (tuning, waiting for work, start-up) SIGTERM raises at once,
as before. The request lives in one object per process (`PREEMPTION`) because a signal disposition
is per process too; nothing else in ablate keeps state at module level.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from .errors import AblateError

STOP_WITHIN_S = 20.0  # default seconds a run may keep training after SIGTERM to finish its epoch
STOP_ENV = "ABLATE_STOP_WITHIN_S"


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler or `kill`): unwound like Ctrl-C, so the running trial is marked for a re-run."""


def stop_within_s() -> float:
    """Seconds a run may go on after SIGTERM to reach the end of its epoch ($ABLATE_STOP_WITHIN_S, default 20)."""
    text = os.environ.get(STOP_ENV, "").strip()
    if not text:
        return STOP_WITHIN_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise AblateError(f"${STOP_ENV} must be a number of seconds >= 0, got {text!r}.")
    return value


@dataclass
class Preemption:
    """This process's SIGTERM state: is a checkpointed run in progress, and has SIGTERM arrived during it."""

    deferring: bool = False
    requested_at: float | None = None  # time.monotonic() of the SIGTERM being deferred

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The SIGTERM handler: defer inside a checkpointed run, else unwind at once."""
        if not self.deferring:
            raise Terminated()
        if self.requested_at is None:
            self.requested_at = time.monotonic()
            print("SIGTERM: stopping at the next safe point (end of this epoch, or now if it cannot finish in "
                  f"{stop_within_s():g} s); the item will be re-run from its checkpoint", file=sys.stderr, flush=True)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Defer SIGTERM to the training loop's safe points while a checkpointed item trains."""
        stop_within_s()  # a bad $ABLATE_STOP_WITHIN_S is refused here, not inside the signal handler
        self.deferring, self.requested_at = True, None
        try:
            yield
        finally:
            self.deferring = False
            if self.requested_at is not None:  # the run ended (or failed) before a safe point saw the request
                self.requested_at = None
                raise Terminated()

    def at_epoch_end(self) -> None:
        """After an epoch's checkpoint is saved: stop here if SIGTERM came."""
        if self.requested_at is not None:
            self.requested_at = None
            raise Terminated()

    def at_step(self, done: int, total: int, epoch_started: float) -> None:
        """After `done` of `total` steps of an epoch that started at `epoch_started` (time.perf_counter):
        stop now when SIGTERM came and the rest of the epoch's steps, at the pace so far, would take longer
        than what is left of the stop budget (evaluation after the epoch is not counted: it is short)."""
        if self.requested_at is None or done >= total:
            return
        rest = (time.perf_counter() - epoch_started) / max(done, 1) * (total - done)
        if rest > stop_within_s() - (time.monotonic() - self.requested_at):
            self.requested_at = None
            raise Terminated()


PREEMPTION = Preemption()


def install() -> signal.Handlers | None:
    """Route SIGTERM to PREEMPTION (main thread only). Returns the previous handler, for `uninstall`."""
    return signal.signal(signal.SIGTERM, PREEMPTION.handle)


def uninstall(previous: object) -> None:
    signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]
