"""Gather the finished points of layer sweeps run in parts into one ``layer-sweep`` report.

    python scripts/collect_layer_sweep.py runs/grid5/layer-sweep --base checkpoints/grid5/base \
        --out checkpoints/grid5/reports/controllers_layers.json

``python -m irl_core layer-sweep`` writes each (layer, seed) point's evaluation to
``<run-dir>/layer<L>_seed<S>/report.json`` as it finishes, so seeds run as separate commands (on separate cores)
can be combined without evaluating anything again. Points whose run has not finished are left out and listed.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from irl_core.checkpoints import atomic_write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--base", required=True, help="the base model the sweep controlled")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows, missing = [], []
    for point in sorted(Path(args.run_dir).glob("layer*_seed*")):
        m = re.fullmatch(r"layer(\d+)_seed(\d+)", point.name)
        report = point / "report.json"
        status = json.loads((point / "status.json").read_text()).get("status") if (point / "status.json").exists() else None
        if not m or not report.exists() or status != "done":
            missing.append(point.name)
            continue
        rows.append(json.loads(report.read_text()))
    if not rows:
        sys.exit(f"error: no finished points under {args.run_dir}")
    rows.sort(key=lambda r: (r["layer"], r["seed"]))
    config = json.loads((Path(args.run_dir) / f"layer{rows[0]['layer']}_seed{rows[0]['seed']}" / "config.json").read_text())
    out = {"base": args.base, "world": rows[0].get("world"), "n_layers": max(r["layer"] for r in rows),
           "config": config, "rows": rows, "unfinished": missing,
           "command": f"python -m irl_core layer-sweep --base {args.base} --preset cpu --seeds <S> --episodes "
                      f"{rows[0]['episodes']} --run-dir {args.run_dir} (one command per seed), then "
                      f"python scripts/collect_layer_sweep.py {args.run_dir} --base {args.base} --out {args.out}"}
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}: {len(rows)} points" + (f"; unfinished: {', '.join(missing)}" if missing else ""))


if __name__ == "__main__":
    main()
