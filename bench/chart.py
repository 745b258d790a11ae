"""The README's performance chart and table, from one benchmark results file.

    .venv/bin/python bench/chart.py                 # the newest full run in bench/results/
    .venv/bin/python bench/chart.py RESULTS.json    # a given run

Writes bench/throughput.svg (throughput through nginx and each gateway variant as a share
of direct, at 64 connections, per backend) and prints the markdown table the README shows
next to it. The SVG is written by hand (no plotting library) and carries its numbers in
<metadata>, so tests/test_docs.py can check that the README quotes the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
from html import escape
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_OUT = BENCH_DIR / "throughput.svg"

BACKENDS = {
    "sdk-json": "MCP SDK server, JSON answers",
    "sdk-sse": "MCP SDK server, SSE answers",
    "raw": "bare JSON-RPC responder",
}
TARGET_LABELS = {
    "nginx": "nginx",
    "gateway:anonymous": "gateway, anonymous",
    "gateway:full-auth": "gateway, key + Entra token + managed identity",
}
COLOURS = ["#9e9e9e", "#1f5fa8", "#6aa6e0", "#2e8b57", "#c77c02"]
TABLE_BACKEND = "sdk-json"  # the reference backend of the latency and CPU rows


def newest_full_run(directory: Path = RESULTS_DIR) -> Path:
    runs = sorted(p for p in directory.glob("*.json") if not p.stem.endswith("-quick"))
    if not runs:
        raise SystemExit(f"no full benchmark run in {directory}: run bench/run.py first")
    return runs[-1]


def summarize(document: dict[str, Any], source: str) -> dict[str, Any]:
    """The numbers the chart and the table show, from a results document's load summary."""
    rows = []
    for row in document["load_summary"]:
        if row["target"] == "direct" or row["backend"] not in BACKENDS:
            continue
        c64, c1 = row.get("c64", {}), row.get("c1", {})
        if "rps_ratio" not in c64:
            continue
        rows.append(
            {
                "backend": row["backend"],
                "target": row["target"],
                "rps_ratio_c64": round(c64["rps_ratio"], 2),
                "added_p50_ms_c1": round(c1["added_p50_ms"], 2) if "added_p50_ms" in c1 else None,
                "proxy_cpu_us_c64": round(c64["proxy_cpu_us"]) if "proxy_cpu_us" in c64 else None,
            }
        )
    direct = {r["backend"]: round(r["c64"]["rps"]) for r in document["load_summary"] if r["target"] == "direct" and "c64" in r}
    if not rows:
        raise SystemExit(f"{source}: no run at 64 connections with a ratio to direct (bench/run.py --connections must include 64)")
    return {"source": source, "connections": 64, "direct_rps_c64": direct, "rows": rows}


def _targets(summary: dict[str, Any]) -> list[str]:
    found = {r["target"] for r in summary["rows"]}
    ordered = [t for t in TARGET_LABELS if t in found]
    return ordered + sorted(found - set(ordered))


def _backends(summary: dict[str, Any]) -> list[str]:
    found = {r["backend"] for r in summary["rows"]}
    return [b for b in BACKENDS if b in found]


def _ratio(summary: dict[str, Any], backend: str, target: str) -> float | None:
    return next((r["rps_ratio_c64"] for r in summary["rows"] if (r["backend"], r["target"]) == (backend, target)), None)


def svg(summary: dict[str, Any]) -> str:
    targets, backends = _targets(summary), _backends(summary)
    bar, gap, group_gap = 44, 6, 96
    left, plot_h = 56, 240
    top = 44 + 18 * len(targets) + 24  # title, one legend line per target
    group_w = len(targets) * bar + (len(targets) - 1) * gap
    width = max(640, left + len(backends) * group_w + (len(backends) - 1) * group_gap + 56)
    height = top + plot_h + 56
    y = lambda value: top + plot_h - value * plot_h  # noqa: E731  (0..1 of direct)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="-apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="12" role="img" '
        'aria-labelledby="title desc">',
        "<title id=\"title\">Throughput through a proxy, as a share of direct</title>",
        f'<desc id="desc">Requests per second at {summary["connections"]} connections through nginx and the gateway, '
        f'divided by the same load sent straight to the backend; bench/run.py, {escape(summary["source"])}.</desc>',
        f"<metadata>{escape(json.dumps(summary, sort_keys=True))}</metadata>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{left}" y="24" font-size="15" font-weight="600" fill="#222">Throughput as a share of direct, '
        f'{summary["connections"]} connections</text>',
    ]
    for i, target in enumerate(targets):
        legend_y = 40 + 18 * i
        out.append(f'<rect x="{left}" y="{legend_y}" width="12" height="12" fill="{COLOURS[i % len(COLOURS)]}"/>')
        out.append(f'<text x="{left + 18}" y="{legend_y + 10}" fill="#333">{escape(TARGET_LABELS.get(target, target))}</text>')
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        colour, dash = ("#444", ' stroke-dasharray="5 4"') if tick == 1.0 else ("#e3e3e3", "")
        out.append(f'<line x1="{left - 4}" x2="{width - 30}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="{colour}"{dash}/>')
        out.append(f'<text x="{left - 8}" y="{y(tick) + 4:.1f}" text-anchor="end" fill="#555">{tick:.2f}</text>')
    out.append(f'<text x="{width - 30}" y="{y(1.0) - 6:.1f}" text-anchor="end" fill="#444">direct = 1.00</text>')
    for g, backend in enumerate(backends):
        x0 = left + g * (group_w + group_gap)
        for i, target in enumerate(targets):
            value = _ratio(summary, backend, target)
            if value is None:
                continue
            x = x0 + i * (bar + gap)
            shown = max(0.0, min(value, 1.2))
            out.append(
                f'<rect x="{x}" y="{y(shown):.1f}" width="{bar}" height="{shown * plot_h:.1f}" '
                f'fill="{COLOURS[i % len(COLOURS)]}"><title>{escape(TARGET_LABELS.get(target, target))}: '
                f"{value:.2f}</title></rect>"
            )
            out.append(f'<text x="{x + bar / 2}" y="{y(shown) - 4:.1f}" text-anchor="middle" fill="#222">{value:.2f}</text>')
        centre = x0 + group_w / 2
        direct = summary["direct_rps_c64"].get(backend)
        out.append(f'<text x="{centre}" y="{top + plot_h + 20}" text-anchor="middle" fill="#222">{escape(BACKENDS[backend])}</text>')
        if direct:
            out.append(f'<text x="{centre}" y="{top + plot_h + 36}" text-anchor="middle" fill="#666">direct: {direct:,} req/s</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def markdown(summary: dict[str, Any]) -> str:
    """The README's table: throughput per backend, and latency and CPU on the reference backend."""
    targets = _targets(summary)
    header = "| | " + " | ".join(TARGET_LABELS.get(t, t) for t in targets) + " |"
    lines = [header, "|---" * (len(targets) + 1) + "|"]
    for backend in _backends(summary):
        cells = [_ratio(summary, backend, t) for t in targets]
        lines.append(
            f"| req/s at 64 connections, share of direct: {BACKENDS[backend]} | "
            + " | ".join("" if c is None else f"{c:.2f}" for c in cells)
            + " |"
        )
    rows = {r["target"]: r for r in summary["rows"] if r["backend"] == TABLE_BACKEND}
    for key, label, fmt in (
        ("added_p50_ms_c1", f"added median latency, 1 connection: {BACKENDS[TABLE_BACKEND]}", "+{:.2f} ms"),
        ("proxy_cpu_us_c64", f"proxy CPU per request, 64 connections: {BACKENDS[TABLE_BACKEND]}", "{} us"),
    ):
        values = [rows.get(t, {}).get(key) for t in targets]
        lines.append(f"| {label} | " + " | ".join("" if v is None else fmt.format(v) for v in values) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="?", type=Path, help="a bench/results/*.json (default: the newest full run)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"SVG to write (default {DEFAULT_OUT.relative_to(BENCH_DIR.parent)})")
    args = parser.parse_args(argv)
    path = args.results or newest_full_run()
    summary = summarize(json.loads(path.read_text()), path.name)
    args.out.write_text(svg(summary))
    print(markdown(summary))
    print(f"wrote {args.out} from {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
