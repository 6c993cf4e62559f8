"""How a run on the CPU uses the cores: how many torch threads, and how idle threads wait.

Two runs side by side on the same cores (a sweep's jobs, a demo beside a test suite) used to
crawl: OpenMP's worker threads spin while they wait for work, so each process's spinning
threads held the cores the other process needed (PNL on the digits: 3.4 steps/s beside another
run against 25 alone). Threads that sleep while they wait (OpenMP's passive wait policy) give
the cores back. The thread count is not changed by the machine's load: a CPU run's numbers
depend on how many threads split its sums, so the count is chosen from what the process may
use (its cores, or OMP_NUM_THREADS as torchrun and joblib set it for their children), printed,
and recorded in env.json. Measured in benchmarks/sharing_cpu.py.
"""

from __future__ import annotations

import os

# the settings by which a user (or a launcher) already chose how OpenMP threads wait
WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def share_cores() -> None:
    """OpenMP threads sleep while they wait, unless the environment says otherwise.

    OpenMP reads this once, when torch is first imported: call it before that (the command
    line and the test suite do). Child processes (DataLoader workers, torchrun's) inherit it."""
    if not any(name in os.environ for name in WAIT_SETTINGS):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def usable_cores() -> int:
    """The cores this process may run on (a Slurm or taskset limit, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def choose(requested: int) -> tuple[int, str]:
    """(torch threads, why): ``trainer.threads`` when above 0, else OMP_NUM_THREADS where it
    is set, else the cores this process may use."""
    if requested > 0:
        return requested, "trainer.threads"
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env), "OMP_NUM_THREADS"
    cores = usable_cores()
    return cores, f"the {cores} core{'s' if cores != 1 else ''} this process may use"


def apply(requested: int) -> str:
    """Set torch's intra-op threads; the line that says how many and why."""
    import torch

    threads, why = choose(int(requested))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    waits = [f"{name}={os.environ[name]}" for name in WAIT_SETTINGS if name in os.environ]
    return (f"cpu: {threads} torch thread{'s' if threads != 1 else ''} ({why}; "
            f"trainer.threads=N to change){', ' + ' '.join(waits) if waits else ''}")
