"""Added cost of the shim per intercepted call, and on calls it does not intercept.

A small C program reaches the driver the way cudart does (dlopen + cuGetProcAddress_v2 + the
self look-up) and times, in one process: cuMemGetInfo calls, cuMemAlloc + cuMemFree pairs, and
launches of an empty kernel (not intercepted: the shim must not slow them). It runs alternately
without and with the shim, `--repeats` times each; medians, differences and ratios are printed
and written as JSON.

    python bench/shim_bench.py --json shim_bench.json [--shim libuvmshim.so] [--repeats 7]
    python bench/shim_bench.py --stand-in --shim old/libuvmshim.so --shim new/libuvmshim.so
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from uvmtrace.shim.build import find_compiler

BENCH_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef CUresult (*gpa_t)(const char *, void **, int, unsigned long long, int *);
static gpa_t gpa;
static void *get(const char *name, int ver)
{
    void *p = NULL;
    int st;
    if (gpa(name, &p, ver, 0, &st) != 0)
        return NULL;
    return p;
}
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}
static const char ptx[] = ".version 6.0\n.target sm_50\n.address_size 64\n"
                          ".visible .entry k()\n{\nret;\n}\n";
int main(int argc, char **argv)
{
    long n_info = atol(argv[1]), n_alloc = atol(argv[2]), n_launch = atol(argv[3]);
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    gpa_t first = lib ? (gpa_t)dlsym(lib, "cuGetProcAddress_v2") : NULL;
    if (!first || first("cuGetProcAddress", (void **)&gpa, 12000, 0, NULL) != 0) {
        fprintf(stderr, "no libcuda / cuGetProcAddress_v2\n");
        return 2;
    }
    CUresult (*init)(unsigned) = get("cuInit", 2000);
    CUresult (*dev_get)(int *, int) = get("cuDeviceGet", 2000);
    CUresult (*retain)(void **, int) = get("cuDevicePrimaryCtxRetain", 7000);
    CUresult (*set_cur)(void *) = get("cuCtxSetCurrent", 4000);
    CUresult (*info)(size_t *, size_t *) = get("cuMemGetInfo", 3020);
    CUresult (*alloc)(CUdeviceptr *, size_t) = get("cuMemAlloc", 3020);
    CUresult (*release)(CUdeviceptr) = get("cuMemFree", 3020);
    CUresult (*load)(void **, const void *) = get("cuModuleLoadData", 2000);
    CUresult (*func)(void **, void *, const char *) = get("cuModuleGetFunction", 2000);
    CUresult (*launch)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                       unsigned, void *, void **, void **) = get("cuLaunchKernel", 4000);
    CUresult (*sync)(void) = get("cuCtxSynchronize", 2000);
    int dev = 0;
    void *ctx = NULL;
    if (!info || !alloc || !release || (init && init(0))) {
        fprintf(stderr, "no device\n");
        return 2;
    }
    /* A stand-in driver (CPU tests) has no contexts; a real one needs the primary context. */
    if (dev_get && retain && set_cur && (dev_get(&dev, 0) || retain(&ctx, dev) || set_cur(ctx))) {
        fprintf(stderr, "no device\n");
        return 2;
    }
    size_t f, t;
    CUdeviceptr p;
    for (int i = 0; i < 1000; i++)
        info(&f, &t); /* warm-up */
    double t0 = now();
    for (long i = 0; i < n_info; i++)
        info(&f, &t);
    double t1 = now();
    for (long i = 0; i < n_alloc; i++) {
        alloc(&p, 1 << 20);
        release(p);
    }
    double t2 = now();
    double launch_ns = -1;
    void *mod = NULL, *k = NULL;
    if (load && func && launch && sync && !load(&mod, ptx) && !func(&k, mod, "k")) {
        for (int i = 0; i < 1000; i++)
            launch(k, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL);
        sync();
        double t3 = now();
        for (long i = 0; i < n_launch; i++)
            launch(k, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL);
        sync();
        launch_ns = (now() - t3) / n_launch;
    }
    printf("{\"cuMemGetInfo_ns\": %.2f, \"cuMemAlloc+cuMemFree_ns\": %.2f, \"launch_ns\": %.2f}\n",
           (t1 - t0) / n_info, (t2 - t1) / n_alloc, launch_ns);
    return 0;
}
"""

METRICS = ("cuMemGetInfo_ns", "cuMemAlloc+cuMemFree_ns", "launch_ns")


def build_bench(workdir: Path) -> Path:
    src = workdir / "shim_bench.c"
    src.write_text(BENCH_C)
    exe = workdir / "shim_bench"
    subprocess.run([find_compiler(), "-O2", "-o", exe, src, "-ldl"], check=True)
    return exe


def find_shim(given: str | None) -> Path:
    if given:
        return Path(given)
    from uvmtrace.shim.build import build_shim

    return build_shim()


def run_once(exe: Path, counts: list[str], shim: Path | None, run_dir: Path) -> dict:
    env = dict(os.environ)
    if shim is not None:
        env["LD_PRELOAD"] = str(shim)
        env["UVMTRACE_SHIM_DIR"] = str(run_dir)
    out = subprocess.run([str(exe), *counts], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"shim_bench: {out.stderr.strip() or out.returncode}")
    return json.loads(out.stdout)


def alternate(exe: Path, counts: list[str], shims: dict[str, Path], reps: int, work: Path) -> dict:
    """`reps` rounds of one run without a shim, then one with each of `shims`: interleaved so
    drift (clocks, other load) hits every side alike. Each run's record files go right after it:
    left to pile up (~20 MB a run), their dirty page cache is written back while later runs are
    timed."""
    runs: dict[str, list[dict]] = {"without": [], **{name: [] for name in shims}}
    for i in range(reps):
        runs["without"].append(run_once(exe, counts, None, work))
        for name, shim in shims.items():
            run_dir = work / f"run{i}"
            run_dir.mkdir(mode=0o700)
            runs[name].append(run_once(exe, counts, shim, run_dir))
            shutil.rmtree(run_dir)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--shim",
        action="append",
        help="libuvmshim.so (default: build it); repeat to compare builds in one run",
    )
    ap.add_argument(
        "--stand-in", action="store_true", help="against the tests' CPU stand-in driver"
    )
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--info", type=int, default=200000, help="cuMemGetInfo calls per run")
    ap.add_argument("--alloc", type=int, default=5000, help="cuMemAlloc+cuMemFree pairs per run")
    ap.add_argument("--launch", type=int, default=100000, help="kernel launches per run")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    given = args.shim or [None]
    shims = {("with" if len(given) == 1 else str(g)): find_shim(g) for g in given}
    counts = [str(args.info), str(args.alloc), "0" if args.stand_in else str(args.launch)]
    with tempfile.TemporaryDirectory() as tmp:
        if args.stand_in:
            os.environ["LD_LIBRARY_PATH"] = str(_stand_in_driver(Path(tmp)))
        exe = build_bench(Path(tmp))
        runs = alternate(exe, counts, shims, args.repeats, Path(tmp))
    result: dict = {"repeats": args.repeats, "counts": counts, "runs": runs, "median": {}}
    print(f"{'metric':26} {'shim':24} {'without':>10} {'with':>10} {'added':>9} {'ratio':>7}")
    for m in METRICS:
        a = statistics.median(r[m] for r in runs["without"])
        per: dict[str, dict] = {}
        for name in shims:
            b = statistics.median(r[m] for r in runs[name])
            ratio = b / a if a > 0 else None
            per[name] = {"with": b, "added_ns": b - a, "ratio": ratio}
            label = name if len(name) <= 24 else "..." + name[-21:]
            shown = ratio or float("nan")
            print(f"{m:26} {label:24} {a:10.1f} {b:10.1f} {b - a:9.1f} {shown:7.3f}")
        # one library: the flat {without, with, added_ns, ratio}; several: keyed by path
        result["median"][m] = {"without": a, **per.get("with", per)}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


def _stand_in_driver(workdir: Path) -> Path:
    """Build the tests' stand-in libcuda.so.1 (CPU machines): the shim's own cost, no driver's."""
    src = Path(__file__).resolve().parent.parent / "tests" / "stand_in_driver" / "fake_cuda.c"
    subprocess.run([find_compiler(), "-O2", "-fPIC", "-shared", "-o", workdir / "libcuda.so.1", src,
                    "-lpthread"], check=True)  # fmt: skip
    return workdir


def figures(reps: int, gpu: bool) -> list:
    """For `python -m bench`: added ns per intercepted call, and the launch loop (GPU only)."""
    from bench.common import Figure

    label = "real driver" if gpu else "stand-in driver (CPU)"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not gpu:
            os.environ["LD_LIBRARY_PATH"] = str(_stand_in_driver(work))
        exe = build_bench(work)
        shim = find_shim(None)
        counts = ["200000", "5000", "100000" if gpu else "0"]
        runs = alternate(exe, counts, {"with": shim}, reps, work)
    out = []
    # goal: < 100 ns added per recorded call (a pair records two)
    pairs = (("cuMemGetInfo_ns", "cuMemGetInfo", 1),
             ("cuMemAlloc+cuMemFree_ns", "cuMemAlloc+cuMemFree", 2))  # fmt: skip
    for metric, name, calls in pairs:
        a = statistics.median(r[metric] for r in runs["without"])
        b = statistics.median(r[metric] for r in runs["with"])
        per_call = (b - a) / calls
        out.append(Figure(f"shim: ns per {name} ({label})", a, b, "ns",
                          goal=f"< +{100 * calls} ns ({calls} recorded)", met=per_call < 100,
                          note=f"added {b - a:+.0f} ns, {per_call:+.0f} per call"))  # fmt: skip
    if gpu:
        a = statistics.median(r["launch_ns"] for r in runs["without"])
        b = statistics.median(r["launch_ns"] for r in runs["with"])
        out.append(Figure("shim: ns per kernel launch (not intercepted)", a, b, "ns",
                          goal="< 1.01x", met=b / a < 1.01))  # fmt: skip
    return out


if __name__ == "__main__":
    main()
