"""How long an arm takes, measured so that two identical runs agree.

One arm timed once, in one window, one arm after another, records whatever the machine did in
that window: on a shared 2-core machine SE's batch-1 overhead read +20% in one run and +77% in the
next, and the IQR inside each window hid it. Load drifts over seconds; the ratio of two arms timed
back to back does not. So every figure here comes from *interleaved rounds*:

1. every arm is warmed up, and its block size (calls per block) is fixed so a block lasts about
   `block_time` seconds;
2. R rounds; each round visits every arm once, in a fresh random order (seeded, so reproducible),
   and times `blocks` short blocks of it (`torch.utils.benchmark.Timer.timeit` on CPU, CUDA events
   with a synchronisation on GPU), keeping the fastest as the arm's time in that round (another
   process can only ever add time to a block, so the fastest is the least disturbed);
3. per arm: the median over rounds (absolute) and the IQR over rounds (spread), and the overhead vs
   the baseline as the median of the *per-round* ratios arm / baseline, with a distribution-free
   95% CI for that median from binomial order statistics (no normality assumption, no RNG; with
   R = 10 rounds it is [2nd, 9th] smallest ratio, coverage 97.9%), widened to at least +-2% of the
   ratio, the most two identical runs were seen to differ by (what stays fixed within a process).
   Every round times a fresh copy of each arm, so memory layout varies inside a run, not between runs.

The same machinery times inference (eval mode, inference_mode, several rotated input buffers so
the cache does not flatter small batches, optionally replayed through CUDA graphs because small
attention blocks are launch-bound on GPU) and a training step (forward + backward + optimizer step
on a synthetic batch, training mode). The logic is pure over a `time_block(name) -> seconds`
function, so tests drive it with a fake clock.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import statistics
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import stats as sps
from torch import nn

from .device import available_cores
from .config import is_integer, is_number
from .errors import AblateError
from .macs import check_shape
from .precision import autocast, check_precision

# torch.utils.benchmark imports cpp_extension, which logs "No CUDA runtime is found" on CPU machines
# that have a CUDA toolkit directory: noise for a profiler. Silence that one import, then restore.
_cpp_extension_log = logging.getLogger("torch.utils.cpp_extension")
_previous_level = _cpp_extension_log.level
_cpp_extension_log.setLevel(logging.ERROR)
try:
    from torch.utils import benchmark
finally:
    _cpp_extension_log.setLevel(_previous_level)

CI_METHOD = ("distribution-free 95% CI of the median per-round ratio (binomial order statistics), widened to at "
             "least +-resolution x ratio (the run-to-run reproducibility of the method)")

Block = Callable[[], None]


# ---------------------------------------------------------------------------------------------
# process-wide switches, set for the duration and put back


NONDETERMINISTIC_ALERT = " does not have a deterministic implementation"


def nondeterministic_op(message: str) -> str | None:
    """The op a torch determinism alert names ('X does not have a deterministic implementation, but
    you set ...'), or None for any other warning."""
    head, found, _ = message.partition(NONDETERMINISTIC_ALERT)
    return head.strip() if found and head.strip() else None


@contextlib.contextmanager
def record_nondeterministic_ops() -> Iterator[list[str]]:
    """Collect, in first-seen order, the ops that had no deterministic kernel while inside.

    With `use_deterministic_algorithms(True, warn_only=True)` torch warns, and carries on, when an op
    has no deterministic implementation (on CUDA: adaptive_max_pool2d_backward for CAM, CBAM and SE
    with max squeeze, _adaptive_avg_pool2d_backward, ...). Those alerts are turned into a list a run
    can store, so a report can say which arms could not be deterministic; every alert is seen (not
    only the first per place), and other warnings are shown as usual.
    """
    ops: list[str] = []
    with warnings.catch_warnings():  # restores the filters and showwarning on exit
        warnings.filterwarnings("always", message=".*" + re.escape(NONDETERMINISTIC_ALERT))
        previous = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: Any = None, line: str | None = None) -> None:
            op = nondeterministic_op(str(message))
            if op is None:
                previous(message, category, filename, lineno, file, line)
            elif op not in ops:
                ops.append(op)

        warnings.showwarning = show
        yield ops


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work (a no-op on CPU), so a clock read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)





def check_threads(threads: int | None) -> int:
    """None -> every available core; otherwise a positive integer."""
    if threads is None:
        return available_cores()
    if not is_integer(threads) or threads < 1:
        raise AblateError(f"threads must be a positive integer (or None for every core), got {threads!r}.")
    return threads


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count for the duration; the caller's afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def cudnn_benchmark(device: torch.device) -> Iterator[None]:
    """cudnn.benchmark=True while timing fixed shapes on CUDA, restored after (it is process-wide)."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = device.type == "cuda" or previous
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none): recorded before and after timing."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


# ---------------------------------------------------------------------------------------------
# the conditions of a measurement, recorded with every figure


@dataclass(frozen=True)
class Setting:
    """How a set of arms is timed. Every field is part of what a figure means."""

    device: str = "cpu"
    precision: str = "fp32"
    channels_last: bool = False
    threads: int = 1  # intra-op threads while timing: 1 is reproducible on shared machines
    rounds: int = 10
    block_time: float = 0.05  # seconds per timed block (calls per block fixed in warm-up)
    blocks: int = 3  # timed blocks per arm per round; the fastest is the round's time
    warmup: int = 3  # untimed calls per arm before calibration (allocator, oneDNN/cuDNN kernel choice)
    buffers: int = 4  # input batches rotated between calls, so a small batch is not always cache-hot
    cuda_graph: bool = False  # CUDA only: replay the forward pass from captured CUDA graphs
    fresh: bool = True  # a fresh copy of every arm (model, buffers) in every round
    resolution: float = 0.02  # CIs are at least +-2% of the ratio: what two identical runs differ by (see below)
    seed: int = 0  # the round orders

    def __post_init__(self) -> None:
        check_precision(self.precision)
        check_threads(self.threads)
        for key, low in (("rounds", 1), ("blocks", 1), ("warmup", 0), ("buffers", 1)):
            value = getattr(self, key)
            if not is_integer(value) or value < low:
                raise AblateError(f"timing {key} must be an integer >= {low}, got {value!r}.")
        if not (is_number(self.resolution) and 0 <= self.resolution < 1):
            raise AblateError(f"timing resolution must be a fraction in [0, 1), got {self.resolution!r}.")
        if not (is_number(self.block_time) and 0 < self.block_time <= 60):
            raise AblateError(f"timing block_time must be a finite number of seconds in (0, 60], got "
                              f"{self.block_time!r}.")
        if self.cuda_graph and not self.device.startswith("cuda"):
            raise AblateError("cuda_graph timing needs a CUDA device.")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# the pure logic: rounds, ratios, intervals


def round_orders(names: Sequence[str], rounds: int, seed: int) -> list[list[str]]:
    """A fresh random order of `names` for every round, the same for the same seed."""
    rng = np.random.default_rng(seed)
    return [[names[i] for i in rng.permutation(len(names))] for _ in range(rounds)]


def run_rounds(names: Sequence[str], time_block: Callable[[str], float], rounds: int,
               seed: int = 0) -> dict[str, list[float]]:
    """Per name, one time per round: every round calls `time_block` once per name, in a fresh order."""
    if len(set(names)) != len(names) or not names:
        raise AblateError(f"interleaved timing needs distinct names, got {list(names)!r}.")
    times: dict[str, list[float]] = {n: [] for n in names}
    for order in round_orders(list(names), rounds, seed):
        for name in order:
            times[name].append(float(time_block(name)))
    return times


def median_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(low, high, coverage): the distribution-free CI for the median from order statistics.

    The interval [x_(k), x_(n-k+1)] covers the population median with probability
    1 - 2 P(Bin(n, 1/2) < k); k is the largest value with coverage >= `confidence`. With fewer than 6
    values no k reaches 95%: the interval is then [min, max] and its lower coverage is returned.
    """
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan
    best_k, coverage = 1, 1.0 - 2 * 0.5**n
    for k in range(1, n // 2 + 1):
        cover = 1.0 - 2.0 * float(sps.binom.cdf(k - 1, n, 0.5))
        if cover >= confidence:
            best_k, coverage = k, cover
        else:
            break
    return float(x[best_k - 1]), float(x[n - best_k]), coverage


def _iqr(values: Sequence[float]) -> float:
    q1, q3 = np.percentile(np.asarray(values, dtype=float), [25, 75])
    return float(q3 - q1)


@dataclass(frozen=True)
class RoundSummary:
    """One arm over the rounds: absolute time and its ratio to the baseline timed in the same rounds."""

    median_s: float  # median over rounds of the arm's time per call
    iqr_s: float  # IQR over rounds (the spread a user would see rerunning)
    ratio: float | None  # median per-round arm / baseline; None for the baseline itself
    ratio_ci_low: float | None
    ratio_ci_high: float | None
    coverage: float | None  # the CI's actual coverage (order statistics are discrete)
    times_s: list[float] = field(default_factory=list)  # per round
    ratios: list[float] = field(default_factory=list)  # per round

    @property
    def overhead_pct(self) -> float | None:
        return None if self.ratio is None else (self.ratio - 1) * 100

    @property
    def overhead_ci_pct(self) -> tuple[float, float] | None:
        if self.ratio_ci_low is None or self.ratio_ci_high is None:
            return None
        return (self.ratio_ci_low - 1) * 100, (self.ratio_ci_high - 1) * 100


def summarize_rounds(times: Mapping[str, Sequence[float]], baseline: str | None, confidence: float = 0.95,
                     resolution: float = 0.0) -> dict[str, RoundSummary]:
    """Per name: median and IQR over rounds, and the per-round ratio to `baseline` with its CI.

    The order-statistic CI covers the variation *within* one run. Two identical runs also differ by
    what stays fixed for a whole process (which core, memory layout, frequency): measured here at up
    to ~1.7% of the ratio between back-to-back runs of five arms on a shared 2-core VM. `resolution`
    widens every CI to at least +-resolution x ratio, so an interval never claims more than the
    method can repeat.
    """
    base = list(times[baseline]) if baseline is not None else None
    out: dict[str, RoundSummary] = {}
    for name, values in times.items():
        values = [float(v) for v in values]
        if base is None or name == baseline:
            out[name] = RoundSummary(statistics.median(values), _iqr(values), None, None, None, None, values, [])
            continue
        if len(base) != len(values):
            raise AblateError(f"{name!r} and the baseline were timed in different rounds ({len(values)} vs "
                              f"{len(base)}); per-round ratios need the same rounds.")
        ratios = [v / b for v, b in zip(values, base)]
        low, high, coverage = median_ci(ratios, confidence)
        mid = statistics.median(ratios)
        low, high = min(low, mid * (1 - resolution)), max(high, mid * (1 + resolution))
        out[name] = RoundSummary(statistics.median(values), _iqr(values), mid, low, high, coverage, values, ratios)
    return out


def faster_beyond_noise(summary: RoundSummary) -> bool:
    """True when the whole overhead CI lies below zero (the arm reads faster than its baseline)."""
    return summary.ratio_ci_high is not None and summary.ratio_ci_high < 1.0


def within_noise(summary: RoundSummary) -> bool:
    """True when the overhead CI covers zero: the arms cannot be told apart by these timings."""
    return (summary.ratio_ci_low is not None and summary.ratio_ci_high is not None
            and summary.ratio_ci_low <= 1.0 <= summary.ratio_ci_high)


# ---------------------------------------------------------------------------------------------
# what is timed: one call of a block function


def _inputs(batch_size: int, input_shape: Sequence[int], device: torch.device, channels_last: bool,
            buffers: int) -> list[torch.Tensor]:
    """`buffers` distinct random batches (fixed seed) on `device`, channels_last if asked."""
    if not is_integer(batch_size) or batch_size < 1:
        raise AblateError(f"batch size must be a positive integer, got {batch_size!r}.")
    generator = torch.Generator().manual_seed(0)
    shape = (batch_size, *check_shape(input_shape))
    xs = [torch.randn(shape, generator=generator).to(device) for _ in range(buffers)]
    fmt = torch.channels_last if channels_last and len(shape) == 4 else torch.contiguous_format
    return [x.contiguous(memory_format=fmt) for x in xs]


def _rotating(calls: Sequence[Callable[[], Any]]) -> Block:
    """A block function that cycles through `calls` (one per input buffer)."""
    state = {"i": 0}

    def block() -> None:
        i = state["i"]
        state["i"] = (i + 1) % len(calls)
        calls[i]()

    return block


def infer_block(model: nn.Module, batch_size: int, input_shape: Sequence[int], setting: Setting) -> Block:
    """One forward pass per call, eval mode, inference_mode, the setting's precision and layout.

    With `cuda_graph`, each input buffer gets its own captured graph (static shapes, one memory
    pool) and a call replays it: the launch overhead that dominates batch-1 latency of small
    attention blocks on GPU is gone, and what is left is the kernels' own time.
    """
    device = torch.device(setting.device)
    model.eval().to(device)
    if setting.channels_last:
        model.to(memory_format=torch.channels_last)  # only 4-D weights change; Conv1d/Linear stay
    xs = _inputs(batch_size, input_shape, device, setting.channels_last, setting.buffers)

    def forward(x: torch.Tensor) -> Callable[[], Any]:
        def call() -> Any:
            with torch.inference_mode(), autocast(device, setting.precision):
                return model(x)
        return call

    if not setting.cuda_graph:
        return _rotating([forward(x) for x in xs])
    side = torch.cuda.Stream(device)  # warm-up on a side stream, as the CUDA graphs docs require
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for x in xs:
            forward(x)()
    torch.cuda.current_stream(device).wait_stream(side)
    pool = torch.cuda.graph_pool_handle()
    graphs = []
    for x in xs:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            forward(x)()
        graphs.append(graph)
    return _rotating([g.replay for g in graphs])


def train_block(model: nn.Module, batch_size: int, input_shape: Sequence[int], num_classes: int,
                setting: Setting, make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]) -> Block:
    """One training step per call: forward, loss, backward, optimizer step, on synthetic batches."""
    device = torch.device(setting.device)
    model.train().to(device)
    if setting.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model)
    xs = _inputs(batch_size, input_shape, device, setting.channels_last, setting.buffers)
    generator = torch.Generator().manual_seed(1)
    ys = [torch.randint(0, num_classes, (batch_size,), generator=generator).to(device) for _ in xs]

    def step(x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
        def call() -> None:
            with autocast(device, setting.precision):
                loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return call

    return _rotating([step(x, y) for x, y in zip(xs, ys)])


# ---------------------------------------------------------------------------------------------
# real clocks


def _seconds_per_call(fn: Block, number: int, device: torch.device, threads: int) -> float:
    """One timed block of `number` calls: CUDA events around it on GPU, benchmark.Timer on CPU."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        for _ in range(number):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / number
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    return timer.timeit(number).median


def calibrate(fn: Block, setting: Setting) -> int:
    """Warm up, then the calls per block so that one block lasts about `block_time` seconds."""
    device = torch.device(setting.device)
    for _ in range(setting.warmup):
        fn()
    synchronize(device)
    single = min(_seconds_per_call(fn, 1, device, setting.threads) for _ in range(3))
    return max(1, round(setting.block_time / max(single, 1e-7)))


def time_interleaved(makers: Mapping[str, Callable[[], Block]], setting: Setting,
                     baseline: str | None = None) -> tuple[dict[str, RoundSummary], dict[str, Any]]:
    """Time every arm in interleaved rounds; per name a RoundSummary, plus the conditions.

    `makers[name]()` builds a fresh block function (a new copy of the model and its input buffers).
    With `setting.fresh` every round times a fresh copy, warmed up once: allocation and memory layout,
    which stay fixed for a whole process and so differ between two identical runs, then vary between
    rounds and show in the CI instead of hiding between runs. The conditions (threads, load average
    before and after, calls per block, the setting) go with the figures into storage.
    """
    device = torch.device(setting.device)
    with cudnn_benchmark(device), torch_threads(setting.threads):
        load_before = load_average()
        current = {name: make() for name, make in makers.items()}
        numbers = {name: calibrate(fn, setting) for name, fn in current.items()}

        def time_block(name: str) -> float:  # the fastest block: interference only ever adds time
            if setting.fresh:
                current[name] = makers[name]()
                current[name]()
            return min(_seconds_per_call(current[name], numbers[name], device, setting.threads)
                       for _ in range(setting.blocks))

        times = run_rounds(list(makers), time_block, setting.rounds, setting.seed)
        load_after = load_average()
    conditions = {**setting.as_dict(), "calls_per_block": numbers, "load_before": load_before,
                  "load_after": load_after, "ci_method": CI_METHOD}
    return summarize_rounds(times, baseline, resolution=setting.resolution), conditions


# ---------------------------------------------------------------------------------------------
# memory


def peak_memory_mib(model: nn.Module, batch_size: int, input_shape: Sequence[int], setting: Setting) -> float | None:
    """Peak CUDA memory of one forward pass *above* the weights and the input, in MiB.

    The figure is what the pass itself allocates (activations, workspaces): it is taken after a reset
    of the peak counter, minus what was allocated before the pass (weights, the input, and anything
    else live in the process, such as a dataset). CPU has no such counter: None, not a guess.
    """
    device = torch.device(setting.device)
    if device.type != "cuda":
        return None
    model.eval().to(device)
    if setting.channels_last:
        model.to(memory_format=torch.channels_last)
    x = _inputs(batch_size, input_shape, device, setting.channels_last, 1)[0]
    with cudnn_benchmark(device), torch.inference_mode(), autocast(device, setting.precision):
        model(x)  # cudnn autotuning allocates workspaces: keep them out of the measured pass
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        model(x)
        torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20
