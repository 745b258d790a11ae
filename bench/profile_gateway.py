"""Profile the gateway under the benchmark's load, with py-spy.

    .venv/bin/python bench/profile_gateway.py [--variant anonymous] [--backend raw] [-c 64] [--seconds 15]

Starts the same processes as run.py (pinned the same way), drives wrk at the
gateway while `py-spy record` samples it, then prints where the gateway's time
goes: functions by own (self) samples and by inclusive samples, and the share of
each library. The collapsed stacks (for flamegraph.pl / speedscope) are kept in
bench/results/profile-<stamp>.txt.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import BENCH_DIR, ROUTES, BenchError, Setup, find_variants, run_wrk, verify  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="anonymous", help="a name in bench/variants/ or a variant JSON path")
    parser.add_argument("--backend", default="raw", choices=("raw", "sdk-json", "sdk-sse"))
    parser.add_argument("-c", "--connections", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=30)
    return parser.parse_args()


def library(frame: str) -> str:
    """'function (httpcore/_utils.py:37)' -> 'httpcore' (py-spy shortens paths to the package)."""
    path = frame.rpartition("(")[2].rstrip(")").split(":", 1)[0]
    return path.split("/", 1)[0].removesuffix(".py") if "/" in path else path.removesuffix(".py")


def report(collapsed: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    libs: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        total += n
        own[frames[-1]] += n
        libs[library(frames[-1])] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return "no samples"
    out = [f"{total} samples", "", "own time (leaf frames):"]
    out += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    out += ["", "inclusive time:"]
    out += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    out += ["", "own time by library:"]
    out += [f"  {100 * n / total:5.1f}%  {lib}" for lib, n in libs.most_common(15)]
    return "\n".join(out)


def main() -> int:
    args = parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out_dir = BENCH_DIR / "results"
    out_dir.mkdir(exist_ok=True)
    collapsed = out_dir / f"profile-{time.strftime('%Y%m%d-%H%M%S')}-{args.backend}-c{args.connections}.txt"
    try:
        with Setup(find_variants([args.variant]), sse_gap_ms=20) as setup:
            verify(setup)
            gateway = next(t for t in setup.targets if t.name.startswith("gateway:"))
            route = ROUTES[args.backend]
            run_wrk(setup, gateway, route, connections=args.connections, seconds=2, rep=-1)  # warm-up
            spy = subprocess.Popen(
                [py_spy, "record", "--pid", str(gateway.proxy.pid), "--rate", str(args.rate), "--duration",
                 str(args.seconds), "--format", "raw", "--output", str(collapsed)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            result = []
            load = threading.Thread(
                target=lambda: result.append(
                    run_wrk(setup, gateway, route, connections=args.connections, seconds=args.seconds, rep=0)
                )
            )
            load.start()
            load.join()
            _, err = spy.communicate(timeout=60)
            if spy.returncode != 0:
                raise BenchError(f"py-spy failed: {err.decode(errors='replace')}")
    except BenchError as error:
        print(f"PROFILE FAILED: {error}", file=sys.stderr)
        return 1
    r = result[0]
    print(f"{gateway.name} -> {route.name} c={args.connections}: {r.rps:.0f} req/s, p50 {r.p50_ms:.2f} ms, "
          f"gateway CPU {r.proxy_cpu_us_per_req:.0f} us/req (under py-spy at {args.rate} Hz)\n")
    print(report(collapsed, args.top))
    print(f"\ncollapsed stacks: {collapsed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
