#!/usr/bin/env python3
"""Scaling curves from `cargo bench --bench scaling` (issue 27, deliverable 5).

    cargo bench -p tracemark-benches --bench scaling > points.jsonl
    python3 benches/scaling.py points.jsonl

Reads the JSON points, writes four SVG plots next to this file
(`scaling-*.svg`) and the section `scaling` of benches/RESULTS.md. Standard
library only (there is no plotting library in the project's environments).
Every ratio is of two timings taken in the same process, one after the other.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import cpu_name, write_section  # noqa: E402

HERE = Path(__file__).resolve().parent
COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]

Series = Tuple[str, List[Tuple[float, float]], bool]  # name, points, dashed


def ticks(lo: float, hi: float, log: bool) -> List[float]:
    """Axis ticks: the powers of ten (log) or six even steps (linear) inside [lo, hi]."""
    if log:
        return [10.0**k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]
    return [lo + (hi - lo) * k / 5 for k in range(6)]


def svg_lines(path: Path, title: str, xlabel: str, ylabel: str, series: Sequence[Series],
              logy: bool = True, ymin: float | None = None) -> None:
    """A line chart with a log x axis (and a log or linear y axis), one colour per series."""
    w, h, l, r, t, b = 760, 430, 80, 230, 40, 50
    xs = [x for _, pts, _ in series for x, _ in pts]
    ys = [y for _, pts, _ in series for _, y in pts]
    xt = ticks(min(xs), max(xs), True)
    x0, x1 = math.log10(xt[0]), math.log10(xt[-1])
    if logy:
        yt = ticks(min(ys), max(ys), True)
        y0, y1 = math.log10(yt[0]), math.log10(yt[-1])
        fy_raw = math.log10
    else:
        lo = ymin if ymin is not None else min(ys)
        yt = ticks(lo, max(ys) * 1.05, False)
        y0, y1 = yt[0], yt[-1]
        fy_raw = float
    fx = lambda x: l + (math.log10(x) - x0) / max(x1 - x0, 1e-9) * (w - l - r)
    fy = lambda y: t + (y1 - fy_raw(y)) / max(y1 - y0, 1e-9) * (h - t - b)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{(l + w - r) / 2}" y="22" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{l}" y1="{h - b}" x2="{w - r}" y2="{h - b}" stroke="black"/>',
           f'<line x1="{l}" y1="{t}" x2="{l}" y2="{h - b}" stroke="black"/>',
           f'<text x="{(l + w - r) / 2}" y="{h - 12}" text-anchor="middle">{xlabel}</text>',
           f'<text x="18" y="{(t + h - b) / 2}" transform="rotate(-90 18 {(t + h - b) / 2})" '
           f'text-anchor="middle">{ylabel}</text>']
    for x in xt:
        out.append(f'<line x1="{fx(x):.1f}" y1="{t}" x2="{fx(x):.1f}" y2="{h - b}" stroke="#eee"/>')
        out.append(f'<text x="{fx(x):.1f}" y="{h - b + 16}" text-anchor="middle">{x:g}</text>')
    for y in yt:
        out.append(f'<line x1="{l}" y1="{fy(y):.1f}" x2="{w - r}" y2="{fy(y):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{l - 6}" y="{fy(y) + 4:.1f}" text-anchor="end">{y:.3g}</text>')
    for i, (name, pts, dashed) in enumerate(series):
        c = COLORS[i % len(COLORS)]
        d = " ".join(f"{'M' if j == 0 else 'L'}{fx(x):.1f},{fy(y):.1f}" for j, (x, y) in enumerate(pts))
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        out.append(f'<path d="{d}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
        out.extend(f'<circle cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="3" fill="{c}"/>' for x, y in pts)
        out.append(f'<text x="{w - r + 10}" y="{t + 18 * i + 12}" fill="{c}">{name}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def by_kind(points: List[dict]) -> Dict[str, List[dict]]:
    kinds: Dict[str, List[dict]] = {}
    for p in points:
        kinds.setdefault(p["kind"], []).append(p)
    return kinds


def fmt_s(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    points = [json.loads(line) for line in Path(sys.argv[1]).read_text().splitlines() if line.startswith("{")]
    k = by_kind(points)
    lines = [f"\nMeasured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {cpu_name()} "
             f"({len(points)} points; `make bench-scaling`; every ratio from two timings in the same process, "
             "each the median of 11 samples of at least 60 ms, 5 for the largest keyrings, 1-3 runs for accounts).\n"]

    step = k.get("decode_step", [])
    if step:
        batches = sorted({p["batch"] for p in step})
        svg_lines(HERE / "scaling-decode-step.svg", "Decode step, kgw h=1: time over the floor (x += d)",
                  "vocabulary size V", "× floor",
                  [(f"batch {b:g}", [(p["vocab"], p["kgw_s"] / p["floor_s"]) for p in step if p["batch"] == b], False)
                   for b in batches], logy=False, ymin=0.0)
        lines.append("**Decode step against V and batch** (kgw:gamma=0.25,delta=2,context=lefthash:1, "
                     "`process_batch` on lm-like rows; floor = one `x += d` pass over the same rows). "
                     "Plot: `benches/scaling-decode-step.svg`.\n")
        lines.append("| V | batch | floor | kgw | × floor | kgw ns / logit |")
        lines.append("|---:|---:|---:|---:|---:|---:|")
        for p in step:
            lines.append(f"| {p['vocab']:,.0f} | {p['batch']:g} | {fmt_s(p['floor_s'])} | {fmt_s(p['kgw_s'])} | "
                         f"{p['kgw_s'] / p['floor_s']:.2f} | {p['kgw_s'] / (p['vocab'] * p['batch']) * 1e9:.3f} |")
        lines.append("")

    det = k.get("detect_length", [])
    if det:
        svg_lines(HERE / "scaling-detect-length.svg", "Detection on ids, kgw h=1, one thread",
                  "document length (tokens)", "million tokens / s",
                  [("kgw detection", [(p["tokens"], p["tokens"] / p["kgw_s"] / 1e6) for p in det], False),
                   ("bare SipHash / token", [(p["tokens"], p["tokens"] / p["siphash_s"] / 1e6) for p in det], True)],
                  logy=False, ymin=0.0)
        lines.append("**Detection against document length** (one thread, random ids over V = 128,256, pair "
                     "deduplication; the baseline hashes each token's one-token context with SipHash-2-4). "
                     "Plot: `benches/scaling-detect-length.svg`.\n")
        lines.append("| tokens | detection | M tokens/s | bare hash | × bare hash |")
        lines.append("|---:|---:|---:|---:|---:|")
        for p in det:
            lines.append(f"| {p['tokens']:,.0f} | {fmt_s(p['kgw_s'])} | {p['tokens'] / p['kgw_s'] / 1e6:.1f} | "
                         f"{fmt_s(p['siphash_s'])} | {p['kgw_s'] / p['siphash_s']:.2f} |")
        lines.append("")

    ring = k.get("keyring", [])
    if ring:
        one = ring[0]["one_key_s"]
        svg_lines(HERE / "scaling-keyring.svg", "Keyring detection, one 1,000-token document",
                  "keys", "ms per document",
                  [("keyring", [(p["keys"], p["ring_s"] * 1e3) for p in ring], False),
                   ("keys × one key's detection", [(p["keys"], p["keys"] * p["one_key_s"] * 1e3) for p in ring],
                    True)])
        lines.append("**Keyrings** (one 1,000-token document; `KeyringDetector::detect_ids`, the keys one "
                     f"after another on one thread, against one key's `Detector` alone: {fmt_s(one)}). "
                     "Plot: `benches/scaling-keyring.svg`.\n")
        lines.append("| keys | per document | per key | × one key's detection per key |")
        lines.append("|---:|---:|---:|---:|")
        for p in ring:
            per_key = p["ring_s"] / p["keys"]
            lines.append(f"| {p['keys']:,.0f} | {fmt_s(p['ring_s'])} | {fmt_s(per_key)} | {per_key / p['one_key_s']:.2f} |")
        lines.append("")

    acc = k.get("accounts", [])
    if acc:
        svg_lines(HERE / "scaling-accounts.svg", "Account attribution, one 200-token answer",
                  "accounts (keys derived and tested)", "seconds",
                  [("attribute_accounts", [(p["accounts"], p["seconds"]) for p in acc], False),
                   ("linear from 10^3", [(p["accounts"], p["accounts"] / 1e3 * next(
                       q["seconds"] for q in acc if q["accounts"] == 1e3)) for p in acc], True)])
        threads = acc[0]["threads"]
        lines.append("**Account attribution against the number of accounts** (`attribute_accounts`: each "
                     "account's key derived from the master key, a detector built and the 200 tokens tested; "
                     f"Holm over all of them; {threads:g} threads). Plot: `benches/scaling-accounts.svg`.\n")
        lines.append("| accounts | wall time | µs per account | accounts / s |")
        lines.append("|---:|---:|---:|---:|")
        for p in acc:
            lines.append(f"| {p['accounts']:,.0f} | {fmt_s(p['seconds'])} | {p['seconds'] / p['accounts'] * 1e6:.2f} | "
                         f"{p['accounts'] / p['seconds']:,.0f} |")
        lines.append("")

    write_section("scaling", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
