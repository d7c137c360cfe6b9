"""A PyTorch training-step loop with and without the shim (GPU): the shim must not slow work it
does not intercept. Each measurement is its own process; runs alternate; medians.

    python bench/gpu_torch_bench.py --json torch_bench.json [--repeats 5] [--shim lib.so]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import sys, time, torch
torch.manual_seed(0)
dev = torch.device("cuda")
model = torch.nn.Sequential(*[m for _ in range(4) for m in (torch.nn.Linear(2048, 2048),
                                                              torch.nn.ReLU())]).to(dev)
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
x = torch.randn(512, 2048, device=dev)
def step():
    opt.zero_grad(set_to_none=True)
    loss = model(x).square().mean()
    loss.backward()
    opt.step()
for _ in range(20):
    step()
torch.cuda.synchronize()
n = int(sys.argv[1])
t0 = time.perf_counter()
for _ in range(n):
    step()
torch.cuda.synchronize()
print((time.perf_counter() - t0) / n * 1e6)
"""


def one(shim: Path | None, run_dir: Path, steps: int) -> float:
    env = dict(os.environ)
    if shim is not None:
        env["LD_PRELOAD"] = str(shim)
        env["UVMTRACE_SHIM_DIR"] = str(run_dir)
    out = subprocess.run([sys.executable, "-c", CHILD, str(steps)], env=env, check=True,
                         capture_output=True, text=True)  # fmt: skip
    return float(out.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shim", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    runs: dict[str, list[float]] = {"without": [], "with": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            runs["without"].append(one(None, Path(tmp), args.steps))
            rd = Path(tmp) / f"r{i}"
            rd.mkdir(mode=0o700)
            runs["with"].append(one(args.shim, rd, args.steps))
    a, b = statistics.median(runs["without"]), statistics.median(runs["with"])
    result = {"us_per_step": {"without": a, "with": b, "ratio": b / a}, "runs": runs}
    print(f"torch training step: {a:.1f} us without, {b:.1f} us with shim, ratio {b / a:.4f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
