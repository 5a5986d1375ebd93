"""Join benchmark shards into one report: ``python -m benchmarks.merge OUT A/results.json B/results.json ...``

A preset too long for one sitting (the GPU standard preset: ~500 points) runs
as ``python -m benchmarks.run --preset standard --shard K/N [--deadline-s S]``
in several sittings; this writes OUT/results.json and OUT/report.md (and the
plots unless --no-plots) for the union of their points, in the preset's
order. Each point id is taken from the shard that measured it; a SKIPPED
copy (a shard's deadline passed) gives way to a measured one, and a point
measured twice is refused: a report mixes no two runs of one point. The
shards must share the schema version, preset, device, candidate, torch,
CUDA and cuDNN versions and rnnfuse commit; their dates and wall times are
kept in config["shards"].

Exit status as benchmarks.run: 1 when a merged point is WRONG or ERROR, 2 on
a usage error (mismatched shards, a point measured twice), else 0.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import grid, plots, report

# What must agree between shards for their points to share one report.
SAME_ENV = ("device", "candidate", "torch", "cuda", "cudnn", "git")


class MergeError(ValueError):
    pass


def _key(results: dict, name: str):
    if name == "device":  # the card, not the load or the date
        d = results["environment"]["device"]
        return (d.get("type"), d.get("name"), d.get("compute_capability"), d.get("sm_count"))
    return results["environment"].get(name)


def merge(shards: list[dict]) -> dict:
    """One results dict from several runs' results (see the module doc)."""
    if not shards:
        raise MergeError("no shards given")
    first = shards[0]
    for i, s in enumerate(shards[1:], start=2):
        if s["schema_version"] != first["schema_version"] or s["preset"] != first["preset"]:
            raise MergeError(f"shard {i}: schema {s['schema_version']} / preset {s['preset']!r} "
                             f"differ from shard 1's ({first['schema_version']} / {first['preset']!r})")
        for name in SAME_ENV:
            if _key(s, name) != _key(first, name):
                raise MergeError(f"shard {i}: environment {name!r} differs from shard 1's: "
                                 f"{_key(s, name)!r} vs {_key(first, name)!r}")
    by_id: dict[str, dict] = {}
    for i, s in enumerate(shards, start=1):
        for p in s["points"]:
            have = by_id.get(p["id"])
            if have is None or have["status"] == "SKIPPED":
                by_id[p["id"]] = p
            elif p["status"] != "SKIPPED":
                raise MergeError(f"point {p['id']} was measured by two shards (shard {i} and an "
                                 "earlier one): run disjoint shards")
    order = {}
    if first["preset"]:
        device_type = first["environment"]["device"]["type"]
        order = {p.id: n for n, p in enumerate(grid.preset(first["preset"], device_type))}
    points = sorted(by_id.values(), key=lambda p: (order.get(p["id"], len(order)), p["id"]))
    config = {"merged_from": len(shards),
              "shards": [{"shard": s["config"].get("shard"), "argv": s["config"].get("argv"),
                          "date": s["environment"].get("date"), "wall_s": s["config"].get("wall_s")}
                         for s in shards],
              "budget": first["config"].get("budget"), "device": first["config"].get("device")}
    return report.build(points, first["environment"], first["ceilings"], config, first["preset"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.merge", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="output folder")
    ap.add_argument("shards", type=Path, nargs="+", help="results.json of each shard")
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args(argv)
    try:
        merged = merge([json.loads(p.read_text()) for p in args.shards])
    except (MergeError, OSError, json.JSONDecodeError, KeyError) as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    report.write_json(merged, args.out / "results.json")
    report.write_markdown(merged, args.out / "report.md")
    pngs = [] if args.no_plots else plots.write(merged, args.out)
    print(report.console(merged))
    print(f"\nwrote {args.out / 'results.json'}, {args.out / 'report.md'}"
          + "".join(f", {p.name}" for p in pngs))
    return 1 if any(p["status"] in report.FAILED for p in merged["points"]) else 0


if __name__ == "__main__":
    sys.exit(main())
