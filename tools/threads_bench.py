"""Training throughput of ResNet18 at 128 px for a given torch thread count: run two at once to see oversubscription.

usage: python tools/threads_bench.py THREADS    (e.g. `python tools/threads_bench.py 1 & python tools/threads_bench.py 1`)

Why './dev.sh test' gives each pytest-xdist worker one thread (conftest.py): on a 2-core machine, two processes of
one thread each train as fast together as one process of two threads, while two processes of two threads each are
several times slower than either alone.
"""

from __future__ import annotations

import sys
import time

import torch
import torchvision


def main() -> int:
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=2)
    opt = torch.optim.SGD(model.parameters(), 0.01)
    x, y = torch.randn(32, 3, 128, 128), torch.randint(0, 2, (32,))

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(2):  # warm-up
        step()
    n, t = 8, time.perf_counter()
    for _ in range(n):
        step()
    print(f"{threads} thread(s): {32 * n / (time.perf_counter() - t):.1f} img/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
