"""A CPU training step with glibc's malloc defaults against `tasks.allocator.keep_freed_memory` (which training
calls): CPU time and minor page faults a step, each setting in fresh processes (the setting is process-wide).

    .venv/bin/python -m benchmarks.step_memory [--steps 100] [--repeat 3]

The book's batch (32 x 35) on its vocabulary (1,027 symbols): the logits and their gradients are 4.6 MB each.
With the defaults, glibc returns such blocks to the kernel when freed, and the next step faults them in again.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

MODELS = {
    "scratch, hidden 256, SGD (the book's)": {"model": "scratch", "hidden": 256, "optimizer": "sgd", "lr": 100.0},
    "rnn, hidden 256, Adam": {"model": "rnn", "hidden": 256, "optimizer": "adam", "lr": 1e-3},
    "rnn, hidden 32, Adam (the tests' runs)": {"model": "rnn", "hidden": 32, "optimizer": "adam", "lr": 0.01},
}

STEPS = """
import json, resource, sys, time
import torch
import torch.nn.functional as F
from tasks.allocator import keep_freed_memory
from tasks.train.loop import make_optimizer
from tasks.train.model import build_model
from tasks.train.params import TrainParams

settings, steps, keep = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
if keep:
    keep_freed_memory()
torch.manual_seed(0)
torch.set_num_threads(1)
params = TrainParams(device="cpu", **settings)
model = build_model(1027, params)
optimizer = make_optimizer(model, params)
x, y = torch.randint(0, 1027, (32, 35)), torch.randint(0, 1027, (32, 35))  # (batch, num_steps)


def step():
    logits, _ = model(x, model.init_state(32, torch.device("cpu")))  # (batch, num_steps, vocab)
    loss = F.cross_entropy(logits.reshape(-1, 1027), y.reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


for _ in range(5):
    step()
before, cpu = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
for _ in range(steps):
    step()
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps([(time.process_time() - cpu) / steps * 1e3, (after.ru_minflt - before.ru_minflt) / steps]))
"""


def measure(settings: dict, steps: int, keep: bool) -> tuple[float, float]:
    """(CPU ms a step, minor faults a step) in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", STEPS, json.dumps(settings), str(steps), "1" if keep else "0"],
        capture_output=True,
        text=True,
        check=True,
    )
    cpu, faults = json.loads(done.stdout)
    return cpu, faults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("| model | defaults: CPU ms / faults a step | kept: CPU ms / faults a step | CPU ratio |")
    print("| --- | --- | --- | --- |")
    for label, settings in MODELS.items():
        runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for _ in range(args.repeat):  # alternated, so that a slower minute of the machine hits both
            for keep in (False, True):
                runs[keep].append(measure(settings, args.steps, keep))
        cells = []
        for keep in (False, True):
            cpu = statistics.median(c for c, _ in runs[keep])
            faults = statistics.median(f for _, f in runs[keep])
            cells.append((cpu, faults))
        (cpu0, f0), (cpu1, f1) = cells
        print(f"| {label} | {cpu0:.1f} / {f0:,.0f} | {cpu1:.1f} / {f1:,.0f} | {cpu0 / cpu1:.2f}x |")


if __name__ == "__main__":
    main()
