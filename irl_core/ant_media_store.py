"""Where the app's rendered ant rollouts live: :class:`RolloutCache` (finished rollouts on disk under a size
limit), :class:`RenderQueue` (one worker thread rendering queued :class:`irl_core.ant_media.RolloutRequest`
one at a time, with progress) and the shipped gallery (``<media>/gallery.json``, ``scripts/ant_gallery.py``).
The choices behind them (cache key, size limit, one worker) are in :mod:`irl_core.ant_media`'s docstring.

This module imports neither streamlit nor argparse.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from irl_core.ant_media import (RENDER_VERSION, MediaError, RenderSettings, RolloutRequest, check_checkpoint,
                                policy_digest, read_record, render_rollout)
from irl_core.paths import REPO_ROOT

DEFAULT_CACHE_MB = 256
_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    env = os.environ.get("IRL_ANT_MEDIA_CACHE")
    return Path(env) if env else REPO_ROOT / "runs" / "ant_media"


def cache_limit_bytes() -> int:
    try:
        mb = float(os.environ.get("IRL_ANT_MEDIA_CACHE_MB", DEFAULT_CACHE_MB))
    except ValueError:
        mb = DEFAULT_CACHE_MB
    return int(mb * 1e6)


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class RolloutCache:
    """Finished rollouts on disk, ``<root>/<key>/{video.mp4, rollout.json}``, at most ``max_bytes`` in all."""

    def __init__(self, root: Path | None = None, max_bytes: int | None = None):
        self.root = Path(root) if root is not None else cache_dir()
        self.max_bytes = cache_limit_bytes() if max_bytes is None else int(max_bytes)
        self._lock = threading.Lock()

    @staticmethod
    def key(request: RolloutRequest, expert_sha256: str) -> str:
        blob = json.dumps({**request.fields(), "expert": expert_sha256, "render": RENDER_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def entry(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> dict | None:
        """The record of ``key`` (its ``path`` set to the entry folder), or None; a hit counts as a use."""
        folder = self.entry(key)
        rec_path = folder / "rollout.json"
        if not rec_path.exists():
            return None
        try:
            rec = read_record(rec_path)
        except MediaError:
            return None
        if not (folder / rec["video"]).exists():
            return None
        try:
            os.utime(rec_path)
        except OSError:
            pass
        rec["path"] = str(folder)
        return rec

    def render(self, request: RolloutRequest, checkpoint, progress=None, settings: RenderSettings = RenderSettings()) -> dict:
        """Render ``request`` into the cache (unless it is there) and return its record."""
        checkpoint = check_checkpoint(request, checkpoint)
        digest = policy_digest(request, checkpoint)
        key = self.key(request, digest)
        hit = self.get(key)
        if hit is not None:
            return hit
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        try:
            render_rollout(request, checkpoint, tmp, settings, progress, expert_sha256=digest)
            with self._lock:
                final = self.entry(key)
                if final.exists():
                    shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
                self.evict(keep=key)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        rec = self.get(key)
        if rec is None:
            raise MediaError(f"the rendered rollout {self.entry(key)} could not be read back")
        return rec

    def entries(self) -> list[tuple[float, int, Path]]:
        """(last use, bytes, folder) of every entry, oldest first."""
        out = []
        if not self.root.is_dir():
            return out
        for folder in self.root.iterdir():
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            rec = folder / "rollout.json"
            used = rec.stat().st_mtime if rec.exists() else folder.stat().st_mtime
            out.append((used, _dir_bytes(folder), folder))
        return sorted(out)

    def size(self) -> int:
        return sum(b for _, b, _ in self.entries())

    def evict(self, keep: str | None = None) -> list[Path]:
        """Delete the entries used longest ago until the total is within ``max_bytes``; returns them. Also
        deletes unfinished renders (``.tmp-*``) left for more than an hour by a process that died."""
        if self.root.is_dir():
            for tmp in self.root.glob(".tmp-*"):
                try:
                    if time.time() - tmp.stat().st_mtime > 3600:
                        shutil.rmtree(tmp, ignore_errors=True)
                except OSError:
                    pass
        entries = self.entries()
        total = sum(b for _, b, _ in entries)
        removed = []
        for _, nbytes, folder in entries:
            if total <= self.max_bytes:
                break
            if folder.name == keep:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            total -= nbytes
            removed.append(folder)
        return removed


# --------------------------------------------------------------------------------------------------
# Background rendering
# --------------------------------------------------------------------------------------------------
@dataclass
class RenderJob:
    """One queued render. ``state``: queued, running, done or failed (``error`` is then one line)."""

    key: str
    request: RolloutRequest
    checkpoint: Path
    state: str = "queued"
    step: int = 0
    error: str = ""
    record: dict | None = None
    submitted: float = field(default_factory=time.time)
    finished: float | None = None

    @property
    def progress(self) -> float:
        """Steps done over the step limit (an episode may end earlier: then it jumps to 1)."""
        if self.state == "done":
            return 1.0
        return min(self.step / self.request.max_steps, 1.0)

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


class RenderQueue:
    """Renders submitted requests into a :class:`RolloutCache`, one at a time, in a daemon worker thread."""

    KEEP_JOBS = 64

    def __init__(self, cache: RolloutCache | None = None):
        self.cache = cache or RolloutCache()
        self._jobs: dict[str, RenderJob] = {}
        self._todo: "queue.Queue[RenderJob]" = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def key(self, request: RolloutRequest, checkpoint) -> str:
        checkpoint = check_checkpoint(request, checkpoint)
        return self.cache.key(request, policy_digest(request, checkpoint))

    def submit(self, request: RolloutRequest, checkpoint) -> RenderJob:
        """Queue ``request`` (unless it is cached, queued or running); returns its job."""
        checkpoint = check_checkpoint(request, checkpoint)
        key = self.key(request, checkpoint)
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and (job.active or (job.state == "done" and self.cache.get(key) is not None)):
                return job
            job = RenderJob(key, request, checkpoint)
            hit = self.cache.get(key)
            if hit is not None:
                job.state, job.record, job.finished = "done", hit, time.time()
            else:
                self._todo.put(job)
            self._jobs[key] = job
            self._forget_old()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="ant-render", daemon=True)
                self._thread.start()
        return job

    def job(self, key: str) -> RenderJob | None:
        with self._lock:
            return self._jobs.get(key)

    def jobs(self) -> list[RenderJob]:
        """The jobs this process still remembers, oldest first."""
        with self._lock:
            return list(self._jobs.values())

    def wait(self, key: str, timeout: float = 120.0) -> RenderJob | None:
        """Block until the job of ``key`` is finished (tests, scripts)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            job = self.job(key)
            if job is None or not job.active:
                return job
            time.sleep(0.05)
        return self.job(key)

    def _forget_old(self) -> None:
        done = [k for k, j in self._jobs.items() if not j.active]
        for k in done[: max(0, len(self._jobs) - self.KEEP_JOBS)]:
            del self._jobs[k]

    def _work(self) -> None:
        while True:
            job = self._todo.get()
            job.state = "running"

            def progress(t: int, job=job) -> None:
                job.step = t
            try:
                job.record = self.cache.render(job.request, job.checkpoint, progress)
                job.state = "done"
            except MediaError as e:
                job.error, job.state = str(e).splitlines()[0], "failed"
            except Exception as e:  # noqa: BLE001 - a failed render must not kill the worker; the page shows one line
                _log.exception("rendering %s failed", job.request.describe())
                job.error = f"rendering failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                job.state = "failed"
            job.finished = time.time()


_QUEUES: dict[tuple[str, int], RenderQueue] = {}
_QUEUES_LOCK = threading.Lock()


def render_queue() -> RenderQueue:
    """The process's queue for the current cache folder and size limit (environment read at call time)."""
    cache = RolloutCache()
    k = (str(cache.root), cache.max_bytes)
    with _QUEUES_LOCK:
        if k not in _QUEUES:
            _QUEUES[k] = RenderQueue(cache)
        return _QUEUES[k]


# --------------------------------------------------------------------------------------------------
# Shipped gallery
# --------------------------------------------------------------------------------------------------
GALLERY_FILE = "gallery.json"
GALLERY_COMMAND = "python scripts/ant_gallery.py"


def load_gallery(media_dir) -> list[dict]:
    """The shipped videos of a set's ``media/`` folder: ``gallery.json`` lists entries ``{"name", "title",
    "command"}``, each with ``<name>.mp4`` and ``<name>.json`` (a rollout record) beside it. Returns the records
    with ``title``, ``command`` and ``path`` (the folder) added; :class:`MediaError` (one line) if missing."""
    from irl_core.checkpoints import CheckpointError, read_json
    media_dir = Path(media_dir)
    index = media_dir / GALLERY_FILE
    if not index.exists():
        raise MediaError(f"{index} is missing; make the shipped videos with `{GALLERY_COMMAND}`")
    try:
        items = read_json(index)["entries"]
    except (CheckpointError, KeyError, TypeError) as e:
        raise MediaError(f"{index}: not a gallery index ({str(e).splitlines()[0]})") from None
    out = []
    for item in items:
        rec = read_record(media_dir / f"{item['name']}.json")
        if not (media_dir / rec["video"]).exists():
            raise MediaError(f"{media_dir / rec['video']} is missing; remake it with `{item.get('command', GALLERY_COMMAND)}`")
        out.append({**rec, "title": item.get("title", item["name"]), "command": item.get("command", GALLERY_COMMAND),
                    "path": str(media_dir)})
    return out


def video_path(record: dict) -> Path:
    """The mp4 of a record returned by :meth:`RolloutCache.get` or :func:`load_gallery`."""
    return Path(record["path"]) / record["video"]
