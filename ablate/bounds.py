"""Upper bounds on the counts a user sets (epochs, timed rounds x blocks, threads) and the timing estimate.

One torch-free home: the study file's checks (ablate.spec, ablate.recipe), the command-line options
(ablate.cli), `plan` and `profile` read the same figures, so a count that cannot finish is refused
before torch is imported and before anything is written.
"""

from __future__ import annotations

import os

DAY_S = 24 * 3600

TIMED_BLOCKS = 3  # timed blocks per arm per round (the fastest counts): ablate.timing's default, a study's
MAX_TIMED_BLOCKS = 100_000  # rounds x blocks per arm and timed setting: 100,000 blocks of 0.05 s are 83 minutes

# A training schedule of CIFAR-sized data runs 100-300 epochs and the longest published ones a few
# thousand; 10,000 is past any of them, yet 1e9 (a typo) is refused before storage is created.
MAX_EPOCHS = 10_000

# `ablate profile` keeps no partial results: stopped after a day, it loses the day. Timing longer than
# that is a study (`ablate run` resumes, `plan` estimates it), so one profile is bounded by a day.
MAX_PROFILE_S = DAY_S

# torch's thread pools start every thread at once: 100,000 segfault and `libgomp: Out of memory`. The bound
# is not this machine's core count: a study file written on a big machine must still load elsewhere, so
# 256 (above the cores of almost every machine) anywhere, and more only where this machine has the cores.
MAX_THREADS = max(256, os.cpu_count() or 1)

# Tuning trials per group: published searches run tens to a few hundred trials, and TPE's every suggestion
# reads all trials before it (so sampling alone grows with the square of the count): 10,000 trials of one
# epoch each is days per group already, yet 1e9 (a typo) is refused before storage is created.
MAX_TRIALS = 10_000

# `ablate bench --repeats`: the best of N turns settles within a handful (the default is 2); 100 turns of the
# default benchmark (a few minutes each on a 2-core CPU) are already hours, and bench keeps no partial result.
MAX_BENCH_REPEATS = 100

# SLURM refuses a job array whose largest index is MaxArraySize or more; the default MaxArraySize is 1001, so
# indexes 0..1000: 1001 array tasks. A cluster may set more in slurm.conf (`scontrol show config`), but a
# script that only works there fails at sbatch elsewhere; several jobs on one storage add up instead.
SLURM_MAX_ARRAY_SIZE = 1001


def timing_seconds(arms: int, timings: int, rounds: int, blocks: int, block_time: float) -> float:
    """The timed blocks alone: arms x timed settings (batch sizes, the training step) x rounds x blocks x
    block time. A lower bound of the timing: warm-up, calibration and building models come on top."""
    return arms * timings * rounds * blocks * block_time


def duration(seconds: float) -> str:
    """Seconds as the unit a person reads: s, min or h."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:,.1f} h"
