"""Render the ant videos shipped with the app (the Rollouts page's "Shipped videos") into checkpoints/ant/media/.

    python scripts/ant_gallery.py [--only NAME ...] [--set checkpoints/ant] [--out checkpoints/ant/media]

Each entry is rendered exactly as the app renders a new rollout (``irl_core.ant_media.render_rollout``, the app's
render settings) and written as ``<name>.mp4`` plus ``<name>.json`` (its rollout record); ``gallery.json`` lists
them in order with their titles and the command that remakes each. The same episode (not the same pixels: the
``video`` command keeps the model's slower render settings) is also given by
``python -m irl_core video --env ant --task T --seed S --camera C --size N [--mean-action]``.
The seeds were chosen by playing seeds 0..11 without rendering (``ant_media.simulate``): successes on
pretraining tasks and the held-out task with both policies, and two typical failures. The base-model entries
(the set's ``base``, judged on any pretraining task, one with the set's ``gt_controllers`` injected) were chosen
the same way among seeds 0..19 once the base model existed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from irl_core import ant_media as M  # noqa: E402
from irl_core import ant_media_store as S  # noqa: E402
from irl_core.checkpoints import atomic_write_json  # noqa: E402

# name, policy, task, layout seed, camera, size[, make_request's keyword arguments]
ENTRIES = (
    ("pretrain-0-3-2-mean-topdown", "expert-mean", "0-3-2", 0, "topdown", 480),
    ("pretrain-2-1-3-sampled-chase", "expert-sampled", "2-1-3", 2, "chase", 480),
    ("heldout-0-1-2-3-mean-topdown", "expert-mean", "0-1-2-3", 0, "topdown", 480),
    ("heldout-0-1-2-3-sampled-chase", "expert-sampled", "0-1-2-3", 1, "chase", 480),
    ("fail-wall-2-1-3-sampled-topdown", "expert-sampled", "2-1-3", 0, "topdown", 480),
    ("fail-fell-0-1-2-3-mean-chase", "expert-mean", "0-1-2-3", 10, "chase", 480),
    ("base-any-mean-topdown", "base-mean", "0-3-2", 7, "topdown", 480, {"any_task": True}),
    ("base-any-sampled-chase", "base-sampled", "0-3-2", 0, "chase", 480, {"any_task": True}),
    ("base-fail-wall-mean-topdown", "base-mean", "0-3-2", 6, "topdown", 480, {"any_task": True}),
)
LIMIT_BYTES = 10_000_000


def title(rec: dict) -> str:
    if rec.get("any_task"):
        task = f"any pretraining task (followed {rec.get('followed', '?')})"
    else:
        task = f"{rec['task']} ({'held-out' if rec['task'] == '0-1-2-3' else 'pretraining'})"
    who = "base model" if rec["policy"] in M.BASE_POLICIES else "expert"
    steer = f" · controller for colour {rec['inject'][0]} from step {rec['inject'][1]}" if rec.get("inject") else ""
    return (f"{task} · {who}, {M.POLICIES[rec['policy']].split(',')[1].strip()}{steer} · "
            f"{M.CAMERA_LABELS[rec['camera']]} · {M.OUTCOMES[rec['outcome']]} after {rec['length']} steps")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="*", help="render only these entries (the index keeps the others)")
    p.add_argument("--set", default=str(ROOT / "checkpoints" / "ant"), help="the ant checkpoint set (expert, base, …)")
    p.add_argument("--out", default=str(ROOT / "checkpoints" / "ant" / "media"), help="output folder")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [e[0] for e in ENTRIES]
    unknown = set(args.only or ()) - set(names)
    if unknown:
        p.error(f"unknown entries {sorted(unknown)}; choose from {names}")
    index = []
    for name, policy, task, seed, camera, size, *extra in ENTRIES:
        command = f"python scripts/ant_gallery.py --only {name}"
        if not args.only or name in args.only:
            req = M.make_request(policy, task, seed, camera, size, size, **(extra[0] if extra else {}))
            checkpoint = M.check_checkpoint(req, Path(args.set) / req.checkpoint_name)
            with tempfile.TemporaryDirectory() as tmp:
                rec = M.render_rollout(req, checkpoint, tmp)
                shutil.move(Path(tmp) / rec["video"], out / f"{name}.mp4")
            rec["video"] = f"{name}.mp4"
            atomic_write_json(out / f"{name}.json", rec)
            print(f"{name}: {M.OUTCOMES[rec['outcome']]} after {rec['length']} steps, "
                  f"{(out / rec['video']).stat().st_size / 1e6:.2f} MB, rendered in {rec['wall_s']:.1f} s")
        rec = M.read_record(out / f"{name}.json")
        index.append({"name": name, "title": title(rec), "command": command})
    atomic_write_json(out / S.GALLERY_FILE, {
        "about": "Videos shipped for the app's Rollouts page; each entry's command remakes it.",
        "command": "python scripts/ant_gallery.py", "entries": index})
    total = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"wrote {out / S.GALLERY_FILE}: {len(index)} videos, {total / 1e6:.2f} MB in all")
    if total > LIMIT_BYTES:
        print(f"warning: the shipped media exceed {LIMIT_BYTES / 1e6:.0f} MB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
