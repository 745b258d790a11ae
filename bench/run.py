"""The gateway benchmark: the same load direct, through nginx, and through the gateway.

    .venv/bin/python bench/run.py            # full run (about 8 minutes)
    .venv/bin/python bench/run.py --quick    # ~10 s smoke: every target answers, tiny runs

Needs Debian `wrk` and `nginx-light`. Prints a markdown table and writes the raw
numbers to bench/results/<timestamp>.json. See bench/README.md for the method.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jwt_cost  # noqa: E402
from harness import (  # noqa: E402
    BENCH_DIR,
    ROUTES,
    BenchError,
    LoadResult,
    Setup,
    all_variant_names,
    find_variants,
    first_event_times,
    idle_stream_memory,
    median,
    require_tools,
    run_wrk,
    verify,
)

LOAD_BACKENDS = ("raw", "sdk-json", "sdk-sse")
SSE_BACKENDS = ("raw-sse", "sdk-sse")

# Performance targets (shown, never asserted): these defaults are the anonymous variant's; a
# variant file overrides them in "targets" (full-auth: 0.60, 0.7 ms, 500 us).
TARGETS = {"rpsRatioC64": 0.70, "addedP50Ms": 0.5, "cpuUs": 500, "firstEventMs": 1.0, "kibPerStream": 50}


def _at_least_one(text: str) -> int:
    """Counts the report divides by: zero would only fail at the end of a long run."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI smoke: ~10 s, tiny runs, still checks every answer")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--reps", type=int, default=3, help="alternating repetitions (default 3)")
    parser.add_argument("--connections", default="1,16,64", help="wrk concurrencies (default 1,16,64)")
    parser.add_argument("--backends", default=",".join(LOAD_BACKENDS), help="backends under wrk load")
    parser.add_argument(
        "--variant",
        action="append",
        help="gateway variant: a name in bench/variants/ or a path to a variant JSON file (repeatable; default all)",
    )
    parser.add_argument("--sse-samples", type=_at_least_one, default=200, help="first-event samples per target and backend")
    parser.add_argument("--sse-gap-ms", type=float, default=20.0, help="backend pause between first event and result")
    parser.add_argument("--idle-streams", type=_at_least_one, default=500, help="idle GET streams held open per proxy")
    parser.add_argument("--jwt-cold", type=int, default=1000, help="fresh tokens for the JWT validation cost (0: skip it)")
    parser.add_argument("--jwt-cached", type=int, default=20000, help="repeated-token validations for the JWT cost")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results", help="directory for the results JSON")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir with configs and process logs")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.reps, args.connections = 1, 1, "16"
        args.backends, args.sse_samples, args.idle_streams = "raw", 5, 20
        args.jwt_cold, args.jwt_cached = 50, 2000
    args.connections = [int(c) for c in args.connections.split(",")]
    args.backends = args.backends.split(",")
    unknown = set(args.backends) - set(LOAD_BACKENDS)
    if unknown:
        parser.error(f"unknown backend(s) {sorted(unknown)}; choose from {LOAD_BACKENDS}")
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_load(setup: Setup, args: argparse.Namespace) -> list[LoadResult]:
    """Alternate targets innermost, rotating their order each rep, so drift hits all alike."""
    if not args.quick:
        log("warm-up: 1 s per backend and target at c=16")
        for name in args.backends:
            for target in setup.targets:
                run_wrk(setup, target, ROUTES[name], connections=16, seconds=1, rep=-1)
    results = []
    targets = setup.targets
    for rep in range(args.reps):
        order = targets[rep % len(targets) :] + targets[: rep % len(targets)]
        for name in args.backends:
            for connections in args.connections:
                for target in order:
                    result = run_wrk(setup, target, ROUTES[name], connections=connections, seconds=args.duration, rep=rep)
                    cpu = f" proxy {result.proxy_cpu_us_per_req:.0f} us/req" if result.proxy_cpu_us_per_req else ""
                    log(
                        f"rep {rep} {name:8} c={connections:<3} {target.name:20} {result.rps:8.0f} req/s "
                        f"p50 {result.p50_ms:.3f} ms p99 {result.p99_ms:.3f} ms{cpu}"
                    )
                    results.append(result)
    return results


def summarize_load(results: list[LoadResult]) -> list[dict[str, Any]]:
    """Medians over reps per (backend, target, c), and each target against direct."""
    rows = []
    keys = sorted({(r.backend, r.target) for r in results}, key=lambda k: (LOAD_BACKENDS.index(k[0]), k[1] != "direct", k[1] != "nginx", k[1]))
    for backend, target in keys:
        row: dict[str, Any] = {"backend": backend, "target": target}
        for c in sorted({r.connections for r in results}):
            mine = [r for r in results if (r.backend, r.target, r.connections) == (backend, target, c)]
            direct = [r for r in results if (r.backend, r.target, r.connections) == (backend, "direct", c)]
            if not mine:
                continue
            cell = {
                "rps": median(r.rps for r in mine),
                "p50_ms": median(r.p50_ms for r in mine),
                "p99_ms": median(r.p99_ms for r in mine),
                "backend_cpu_us": median(r.backend_cpu_us_per_req for r in mine),
            }
            if mine[0].proxy_cpu_us_per_req is not None:
                cell["proxy_cpu_us"] = median(r.proxy_cpu_us_per_req for r in mine)  # type: ignore[misc]
            if direct:
                # Paired within each rep: the machine's speed drifts between reps (other
                # tenants), and a ratio of two medians would mix fast and slow minutes.
                direct_by_rep = {r.rep: r.rps for r in direct}
                cell["rps_ratio"] = median(r.rps / direct_by_rep[r.rep] for r in mine if r.rep in direct_by_rep)
                cell["added_p50_ms"] = cell["p50_ms"] - median(r.p50_ms for r in direct)
                cell["added_p99_ms"] = cell["p99_ms"] - median(r.p99_ms for r in direct)
            row[f"c{c}"] = cell
        rows.append(row)
    return rows


def summarize_sse(times: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    rows = []
    for backend, per_target in times.items():
        direct = median(per_target["direct"]) * 1000
        for target, samples in per_target.items():
            ms = sorted(s * 1000 for s in samples)
            rows.append(
                {
                    "backend": backend,
                    "target": target,
                    "samples": len(ms),
                    "median_ms": median(ms),
                    "p90_ms": ms[int(0.9 * (len(ms) - 1))],
                    "added_median_ms": median(ms) - direct,
                }
            )
    return rows


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def markdown(
    load: list[dict[str, Any]],
    sse: list[dict[str, Any]],
    idle: dict[str, dict[str, Any]],
    args: argparse.Namespace,
    *,
    jwt: dict[str, Any] | None = None,
    emulators: dict[str, Any] | None = None,
    targets: dict[str, dict[str, float]] | None = None,
) -> str:
    c_lo, c_mid, c_hi = 1, 16, 64
    out = [
        f"### Load: wrk -t1, POST tools/call, {args.duration} s runs, medians of {args.reps} alternating reps",
        "",
        "| backend | target | p50 c=1 ms | added p50 ms | p99 c=1 ms | added p99 ms | req/s c=16 | vs direct | req/s c=64 | vs direct | proxy CPU us/req c=64 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in load:
        lo, mid, hi = row.get(f"c{c_lo}", {}), row.get(f"c{c_mid}", {}), row.get(f"c{c_hi}", {})
        direct = row["target"] == "direct"
        out.append(
            f"| {row['backend']} | {row['target']} | {_fmt(lo.get('p50_ms'), '.3f')} | "
            f"{'' if direct else _fmt(lo.get('added_p50_ms'), '+.3f')} | {_fmt(lo.get('p99_ms'), '.3f')} | "
            f"{'' if direct else _fmt(lo.get('added_p99_ms'), '+.3f')} | {_fmt(mid.get('rps'), '.0f')} | "
            f"{'' if direct else _fmt(mid.get('rps_ratio'))} | {_fmt(hi.get('rps'), '.0f')} | "
            f"{'' if direct else _fmt(hi.get('rps_ratio'))} | {'' if direct else _fmt(hi.get('proxy_cpu_us'), '.0f')} |"
        )
    out += [
        "",
        f"### SSE: time to the first event (a progress notification sent at once), medians of {args.sse_samples} samples",
        "",
        "| backend | target | first event ms | p90 ms | added ms |",
        "|---|---|---|---|---|",
    ]
    for row in sse:
        added = "" if row["target"] == "direct" else _fmt(row["added_median_ms"], "+.3f")
        out.append(f"| {row['backend']} | {row['target']} | {row['median_ms']:.3f} | {row['p90_ms']:.3f} | {added} |")
    out += ["", "### Idle GET SSE streams held open through a proxy (raw backend)", "", "| proxy | streams | RSS before KiB | RSS with streams KiB | KiB per stream |", "|---|---|---|---|---|"]
    for target, row in idle.items():
        out.append(
            f"| {target} | {row['streams']} | {row['rss_before_kib']} | {row['rss_with_streams_kib']} | {row['kib_per_stream']:.1f} |"
        )
    if jwt:
        out += ["", *jwt_cost.markdown(jwt)]
    if emulators:
        during = {k: emulators["after"][k] - emulators["after_verify"][k] for k in emulators["after"]}
        out += [
            "",
            f"Emulated Azure (Entra + managed identity, in the bench process): requests by the end of verify "
            f"{emulators['after_verify']}; during the load, SSE and idle-stream measurements {during}.",
        ]
    out += ["", *target_lines(load, sse, idle, targets or {}), *variant_deltas(load)]
    return "\n".join(out)


def target_lines(
    load: list[dict[str, Any]], sse: list[dict[str, Any]], idle: dict[str, dict[str, Any]], targets: dict[str, dict[str, float]]
) -> list[str]:
    """The performance targets for each gateway variant: shown for reading, never asserted."""
    lines = ["### Performance targets (gateway variants)", ""]
    gateways = sorted({r["target"] for r in load if r["target"].startswith("gateway:")} | set(idle))
    for gw in gateways:
        if not gw.startswith("gateway:"):
            continue
        t = {**TARGETS, **targets.get(gw, {})}
        checks = []
        for row in load:
            if row["target"] != gw:
                continue
            hi, lo = row.get("c64", {}), row.get("c1", {})
            if row["backend"] == "sdk-json" and "rps_ratio" in hi:
                checks.append((f"sdk-json req/s c=64 vs direct {hi['rps_ratio']:.2f} (>= {t['rpsRatioC64']})", hi["rps_ratio"] >= t["rpsRatioC64"]))
            if row["backend"] == "sdk-sse" and "rps_ratio" in hi:
                # The throughput target is set on the stateless JSON SDK backend (the reference
                # backend); SSE answers cost every proxy per event, so: reported, not judged.
                nginx = next((r.get("c64", {}).get("rps_ratio") for r in load if r["target"] == "nginx" and r["backend"] == "sdk-sse"), None)
                checks.append((f"sdk-sse req/s c=64 vs direct {hi['rps_ratio']:.2f} (SSE answers, for reference; nginx {_fmt(nginx)})", None))
            if row["backend"] == "raw" and "added_p50_ms" in lo:
                checks.append((f"raw added p50 c=1 {lo['added_p50_ms']:.3f} ms (<= {t['addedP50Ms']})", lo["added_p50_ms"] <= t["addedP50Ms"]))
            if "proxy_cpu_us" in hi:
                checks.append((f"{row['backend']} CPU c=64 {hi['proxy_cpu_us']:.0f} us/req (<= {t['cpuUs']})", hi["proxy_cpu_us"] <= t["cpuUs"]))
        for row in sse:
            if row["target"] == gw:
                checks.append((f"{row['backend']} first event added {row['added_median_ms']:.3f} ms (<= {t['firstEventMs']})", row["added_median_ms"] <= t["firstEventMs"]))
        if gw in idle:
            kib = idle[gw]["kib_per_stream"]
            checks.append((f"idle stream {kib:.1f} KiB (<= {t['kibPerStream']})", kib <= t["kibPerStream"]))
        verdicts = {True: " met", False: " MISSED", None: ""}
        lines += [f"- {gw}: " + "; ".join(f"{text}{verdicts[ok]}" for text, ok in checks)]
    return lines


def variant_deltas(load: list[dict[str, Any]], base: str = "gateway:anonymous") -> list[str]:
    """What each other gateway variant adds over the anonymous one (same run): the price of its features."""
    lines = []
    for other in sorted({r["target"] for r in load if r["target"].startswith("gateway:")} - {base}):
        parts = []
        for row in load:
            if row["target"] != other:
                continue
            mine = row
            theirs = next((r for r in load if r["target"] == base and r["backend"] == row["backend"]), None)
            if theirs is None:
                continue
            for c, key, unit, spec in (("c1", "p50_ms", "ms p50 c=1", "+.3f"), ("c64", "proxy_cpu_us", "us/req CPU c=64", "+.0f")):
                a, b = mine.get(c, {}).get(key), theirs.get(c, {}).get(key)
                if a is not None and b is not None:
                    parts.append(f"{row['backend']} {format(a - b, spec)} {unit}")
        if parts:
            lines += [f"- {other} minus {base}: " + "; ".join(parts)]
    return ["", *lines] if lines else []


def gateway_source() -> dict[str, Any]:
    """Which gateway code a run measured: a digest over shared/**/*.py and its newest file, taken at start."""
    import hashlib

    files = sorted((BENCH_DIR.parent / "shared").rglob("*.py"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(BENCH_DIR.parent)).encode() + b"\0" + path.read_bytes() + b"\0")
    newest = max(files, key=lambda p: p.stat().st_mtime)
    return {
        "sha256": digest.hexdigest(),
        "files": len(files),
        "newest": str(newest.relative_to(BENCH_DIR.parent)),
        "newest_mtime": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(newest.stat().st_mtime)),
    }


def environment(setup: Setup) -> dict[str, Any]:
    def first_line(argv: list[str]) -> str:
        done = subprocess.run(argv, capture_output=True, text=True)
        return (done.stdout + done.stderr).strip().splitlines()[0]

    packages = ("httpx", "httpcore", "h11", "anyio", "sniffio", "starlette", "uvicorn", "uvloop", "httptools", "mcp")
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "pinned": setup.pinned,
        "wrk": first_line(["wrk", "-v"]),
        "nginx": first_line(["nginx", "-v"]),
        "packages": {p: metadata.version(p) for p in packages},
        "variants": {v.name: v.description for v in setup.variants},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    source = gateway_source()
    try:
        require_tools()
        variants = find_variants(args.variant or all_variant_names())
        if not variants:
            raise BenchError("no gateway variants in bench/variants/")
        with Setup(variants, sse_gap_ms=args.sse_gap_ms, keep_logs=args.keep_logs) as setup:
            if not setup.pinned:
                log("warning: fewer than 2 usable cores; processes are NOT pinned, ratios are less meaningful")
            log(f"started {', '.join(f'{p.name} (pid {p.pid})' for p in setup.processes.values())} in {time.monotonic() - started:.1f} s")
            if args.keep_logs:
                log(f"logs and configs in {setup.tmp}")
            verify(setup)
            log("verified: every target answers every backend with a JSON-RPC result")
            if any(t.credential_headers for t in setup.targets):
                log("verified: gateway variants with credentials answer 401 without them")
            emulators = {"after_verify": setup.azure.requests_total()} if setup.azure else None
            load = run_load(setup, args)
            sse_times = {name: first_event_times(setup, ROUTES[name], args.sse_samples) for name in SSE_BACKENDS}
            idle = idle_stream_memory(setup, args.idle_streams)
            if emulators:
                emulators["after"] = setup.azure.requests_total()
            jwt = None
            if args.jwt_cold > 0:
                log(f"JWT validation cost: {args.jwt_cold} fresh tokens, {args.jwt_cached} repeated (in-process)")
                jwt = jwt_cost.measure(setup.start_azure_emulators(), cold=args.jwt_cold, cached=args.jwt_cached)
            env = {**environment(setup), "gateway_source": source}
            targets = {f"gateway:{v.name}": dict(v.targets) for v in setup.variants}
    except BenchError as error:
        print(f"BENCH FAILED: {error}", file=sys.stderr)
        return 1
    load_rows = summarize_load(load)
    sse_rows = summarize_sse(sse_times)
    table = markdown(load_rows, sse_rows, idle, args, jwt=jwt, emulators=emulators, targets=targets)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = args.out / f"{stamp}{'-quick' if args.quick else ''}.json"
    document = {
        "when": stamp,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": env,
        "load_summary": load_rows,
        "sse_summary": sse_rows,
        "idle_streams": idle,
        "jwt_validation": jwt,
        "emulator_requests": emulators,
        "load_runs": [asdict(r) for r in load],
        "sse_samples_s": sse_times,
        "table_markdown": table,
    }
    path.write_text(json.dumps(document, indent=2))
    log(f"results: {path} ({time.monotonic() - started:.1f} s); gateway source shared/ sha256 {source['sha256'][:12]}, newest {source['newest']} {source['newest_mtime']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
