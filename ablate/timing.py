"""How long an arm takes, measured so that two identical runs agree.

One arm timed once, in one window, one arm after another, records whatever the machine did in
that window: on a shared 2-core machine SE's batch-1 overhead read +20% in one run and +77% in the
next, and the IQR inside each window hid it. Load drifts over seconds; the ratio of two arms timed
back to back does not. So every figure here comes from *interleaved rounds*:

1. every arm is warmed up, and its block size (calls per block) is fixed so a block lasts about
   `block_time` seconds;
2. R rounds; each round visits every arm once, in a fresh random order (seeded, so reproducible),
   and times `blocks` short blocks of it (a perf_counter span on CPU, CUDA events
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
on a synthetic batch, training mode). The statistics of the rounds (orders, ratios, CIs) are pure,
in `ablate.rounds`, which tests drive with a fake clock; this module holds the clocks and what they
time. Threads and cuDNN's autotuning are set through `ablate.switches`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .bounds import TIMED_BLOCKS
from .config import is_integer, is_number
from .device import synchronize
from .errors import AblateError
from .macs import check_shape
from .precision import autocast, check_precision
from .rounds import CI_METHOD, RoundSummary, run_rounds, summarize_rounds
from .switches import check_threads, cudnn_flags, torch_threads

Block = Callable[[], None]


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
    blocks: int = TIMED_BLOCKS  # timed blocks per arm per round; the fastest is the round's time
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


def _seconds_per_call(fn: Block, number: int, device: torch.device) -> float:
    """One timed block of `number` calls: CUDA events around it on GPU, a perf_counter span on CPU.

    On CPU one untimed call goes first, so that a cold first call (allocator, caches) does not weigh
    1/number in a block and more in an arm calibrated to fewer calls per block. benchmark.Timer's
    timeit() did this with max(number // 100, 2) warm-up calls, which tripled the cost of timing a
    slow step (one call per block). The caller holds torch's thread count (torch_threads), as
    Timer(num_threads=...) did."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        for _ in range(number):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / number
    fn()
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def calibrate(fn: Block, setting: Setting) -> int:
    """Warm up, then the calls per block so that one block lasts about `block_time` seconds."""
    device = torch.device(setting.device)
    for _ in range(setting.warmup):
        fn()
    synchronize(device)
    single = min(_seconds_per_call(fn, 1, device) for _ in range(3))
    return max(1, round(setting.block_time / max(single, 1e-7)))


def _cudnn_autotune(device: torch.device) -> Any:
    """cudnn.benchmark on while timing fixed shapes on CUDA (left as it is on CPU), restored after."""
    return cudnn_flags(benchmark=True if device.type == "cuda" else None)


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
    with _cudnn_autotune(device), torch_threads(setting.threads):
        load_before = load_average()
        current = {name: make() for name, make in makers.items()}
        numbers = {name: calibrate(fn, setting) for name, fn in current.items()}

        def time_block(name: str) -> float:  # the fastest block: interference only ever adds time
            if setting.fresh:
                current[name] = makers[name]()
                current[name]()
            return min(_seconds_per_call(current[name], numbers[name], device)
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
    with _cudnn_autotune(device), torch.inference_mode(), autocast(device, setting.precision):
        model(x)  # cudnn autotuning allocates workspaces: keep them out of the measured pass
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        model(x)
        torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20
