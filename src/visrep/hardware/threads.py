"""How many CPU threads torch uses, chosen from the cores that are free when visrep starts.

OpenMP threads that wait for each other spin; on a 2-core machine with one other busy process, two
torch threads spend most of their time waiting for the one that lost its core, and training ran
9–100× slower than with one thread (benchmarks/RESULTS.md, any-CPU section). So the count is the
cores this process may use (affinity, cgroup quota) minus the cores other processes keep busy,
sampled from /proc/stat over 0.1 s at start-up, and at least one.

The choice is made when ``visrep`` is imported, before torch is (``configure_process`` sets
``OMP_NUM_THREADS``, which torch reads when it loads), so it is in place before torch's first
parallel region. Overrides, strongest first: a stage's ``train.threads`` / ``generative.threads``,
``VISREP_THREADS``, then an ``OMP_NUM_THREADS`` the user set.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# Set beside OMP_NUM_THREADS when visrep chose it, so that child processes (torchrun workers,
# test subprocesses) choose again instead of taking their parent's choice for the user's.
_OURS = "VISREP_CHOSE_OMP_NUM_THREADS"
LOAD_SAMPLE_S = 0.1
FREE_CORE_THRESHOLD = 0.7  # a core counts as free when at least this fraction of it was idle


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str
    cores: int  # cores this process may run on
    busy_cores: float | None  # other processes' load when sampled (None: not sampled)
    wait_policy: str | None  # OMP_WAIT_POLICY in effect (None: the runtime's default)

    def to_dict(self) -> dict:
        return asdict(self)


_choice: ThreadChoice | None = None


def configure_process() -> ThreadChoice:
    """Choose the thread count once per process and put it where torch will read it."""
    global _choice
    if _choice is None:
        _choice = choose_threads()
        _install(_choice.threads)
    return _choice


def apply_threads(requested: int | None) -> ThreadChoice:
    """A stage's own setting (``train.threads``) wins over the process-wide choice."""
    global _choice
    choice = configure_process()
    if requested:
        _choice = ThreadChoice(int(requested), "set by the stage's config", choice.cores, choice.busy_cores,
                               choice.wait_policy)
        _install(_choice.threads)
    return _choice


def choose_threads() -> ThreadChoice:
    cores = available_cores()
    policy = os.environ.get("OMP_WAIT_POLICY")
    forced = os.environ.get("VISREP_THREADS", "").strip()
    if forced:
        return ThreadChoice(_positive_int(forced, "VISREP_THREADS"), "VISREP_THREADS", cores, None, policy)
    user_omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if user_omp and os.environ.get(_OURS) != user_omp:
        return ThreadChoice(_positive_int(user_omp, "OMP_NUM_THREADS"), "OMP_NUM_THREADS set by the user", cores,
                            None, policy)
    # Under a CPU quota (containers) /proc/stat shows the host's CPUs, not ours: trust the quota instead.
    busy = None if _quota_limits() else busy_cores_elsewhere(cores)
    threads = threads_for(cores, busy)
    reason = f"{cores} usable cores, {busy:.1f} busy with other work" if busy is not None else f"{cores} usable cores"
    return ThreadChoice(threads, reason, cores, busy, policy)


def threads_for(cores: int, busy: float | None) -> int:
    """Cores free enough to run a thread without waiting for another process."""
    if busy is None:
        return max(1, cores)
    return max(1, min(cores, math.floor(cores - busy + (1 - FREE_CORE_THRESHOLD))))


def available_cores() -> int:
    """CPUs in this process's affinity mask, capped by a cgroup v2 CPU quota when one is set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, math.floor(quota)) if quota else cores)


def _quota_limits() -> bool:
    """True when a cgroup CPU quota, not the affinity mask, sets how many cores this process has."""
    quota = _cgroup_quota()
    if quota is None:
        return False
    cpus = _affinity()
    return cpus is None or math.floor(quota) < len(cpus)


def _cgroup_quota() -> float | None:
    try:
        limit, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(1.0, int(limit) / int(period))


def busy_cores_elsewhere(cores: int, interval: float = LOAD_SAMPLE_S) -> float | None:
    """Cores' worth of CPU time other processes used during ``interval`` seconds (None off Linux).

    This process sleeps while sampling, so its own start-up does not count as load.
    """
    first = _cpu_times()
    if first is None:
        return None
    time.sleep(interval)
    second = _cpu_times()
    cpus = _affinity()
    busy = 0.0
    for cpu, (total, idle) in second.items():
        if cpu in first and (cpus is None or cpu in cpus):
            elapsed = total - first[cpu][0]
            if elapsed > 0:
                busy += 1.0 - (idle - first[cpu][1]) / elapsed
    return min(float(cores), max(0.0, busy))


def _cpu_times() -> dict[int, tuple[int, int]] | None:
    """Per CPU: (all jiffies, idle + iowait jiffies) from /proc/stat."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    times = {}
    for line in lines:
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            numbers = [int(v) for v in values[:8]]
            times[int(name[3:])] = (sum(numbers), numbers[3] + numbers[4])
    return times or None


def _affinity() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _install(threads: int) -> None:
    """Before torch loads: the OpenMP/MKL variables it reads. After: torch.set_num_threads."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
        return
    if os.environ.get("OMP_NUM_THREADS") and os.environ.get(_OURS) != os.environ["OMP_NUM_THREADS"] \
            and not os.environ.get("VISREP_THREADS"):
        return  # the user's own OMP_NUM_THREADS already says it
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    os.environ[_OURS] = str(threads)


def _positive_int(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        from visrep.errors import UserError

        raise UserError(f"{name} must be a whole number ≥ 1 (got '{text}')")
    return value
