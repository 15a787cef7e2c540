#!/usr/bin/env python3
"""Turns criterion's estimates into the ratio tables of benches/RESULTS.md.

    python3 benches/report.py <criterion dir> <section> <group prefix> <baseline function>

Every benchmark of a group whose id starts with <group prefix> is reported as
its median time and its ratio to the group's <baseline function> (measured in
the same run). The table replaces the text between
`<!-- <section>:begin -->` and `<!-- <section>:end -->` in RESULTS.md.
"""

import json
import platform
import re
import sys
from datetime import date
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_section(section: str, body: str) -> None:
    """Replaces the text between the section's markers in RESULTS.md (appends the section if absent)."""
    begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: begin + body + end, text, flags=re.S)
    else:
        text += f"\n## {section}\n\n{begin}{body}{end}\n"
    RESULTS.write_text(text)


def load(criterion: Path, prefix: str):
    groups = {}
    for bench in criterion.rglob("new/benchmark.json"):
        meta = json.loads(bench.read_text())
        if not meta["group_id"].startswith(prefix):
            continue
        est = json.loads((bench.parent / "estimates.json").read_text())
        name = meta["function_id"] or ""
        if meta.get("value_str"):
            name = f"{name}/{meta['value_str']}"
        groups.setdefault(meta["group_id"], {})[name] = est["median"]["point_estimate"]
    return groups


def fmt_time(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def natural(key: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def table(groups, baseline: str) -> str:
    lines = []
    for gid in sorted(groups, key=natural):
        benches = groups[gid]
        if baseline not in benches:
            continue
        base = benches[baseline]
        lines.append(f"\n**{gid}** (baseline `{baseline}` = {fmt_time(base)})\n")
        lines.append("| benchmark | median | × baseline |")
        lines.append("|---|---:|---:|")
        for name in sorted(benches, key=lambda n: (n != baseline, natural(n))):
            lines.append(f"| {name} | {fmt_time(benches[name])} | {benches[name] / base:.2f} |")
    return "\n".join(lines)


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    criterion, section, prefix, baseline = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    groups = load(criterion, prefix)
    if not groups:
        sys.exit(f"no criterion results under {criterion} for groups starting with {prefix!r}")
    body = (f"\nMeasured {date.today().isoformat()} on {cpu_name()} "
            f"({platform.machine()}, {__import__('os').cpu_count()} logical CPUs).\n" + table(groups, baseline) + "\n")
    write_section(section, body)
    print(f"wrote section {section!r} ({len(groups)} groups) to {RESULTS}")


if __name__ == "__main__":
    main()
