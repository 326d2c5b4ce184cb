"""Orchestration cost of the Luigi graph per video: one task per video vs. shards of K videos.

    python -m bench.bench_schedule [--sizes 1000 3000 20000] [--baseline-sizes 1000 3000]
                                   [--sweep-size 20000 --sweep-k 10 25 50 100 200] [--luigid 3000]

Every input is a zero-byte ``.mp4``: extraction fails at once (VideoError "empty file"), so
what is left is Luigi's own cost plus writing one outcome record per video and stage. For each
configuration it runs ``FeatureIndex`` (``--config demo``) in a fresh process, as the command
line does (Luigi's default DEBUG logging, here to /dev/null), and prints

* tasks: the tasks the worker scheduled;
* cpu: user + sys CPU seconds of ``luigi.build`` (imports excluded), and per video;
* noop: CPU and wall seconds of the same command again (everything complete);
* rescan: the same with the index deleted, so every shard's records are checked again;
* rss: peak resident memory of the process (MiB).

Layouts: ``per-video`` is the graph before sharding (``FeatureIndex`` requiring one
``VideoFeatures`` per video, each requiring its ``FlowCache``), kept here as the baseline;
``shards`` is the current graph with the shipped ``[shards]`` settings, ``K=<k>`` a shard
size forced (``min_shards = 1``, ``max_shards = 0``). ``--luigid N`` adds a run of N videos through a central
``luigid`` with two workers started side by side (CPU of both workers and of luigid).
Absolute numbers depend on the machine's load: compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- child process


def child(args: argparse.Namespace) -> None:
    """One ``luigi.build`` of FeatureIndex; prints a RESULT json line."""
    sys.path.insert(0, str(ROOT))
    import luigi

    import tasks
    from tasks.shards import VideoFeatures

    class PerVideoIndex(tasks.FeatureIndex):
        """The graph before sharding: one VideoFeatures (and FlowCache) task per video."""

        def requires(self):
            return [self.clone(VideoFeatures, video_name=n, video_id=v) for n, v in self.videos().items()]

    cfg = luigi.configuration.get_config()
    if args.k:
        cfg.set("shards", "videos_per_shard", str(args.k))
        cfg.set("shards", "min_shards", "1")
        cfg.set("shards", "max_shards", "0")
    if args.scheduler_port:
        cfg.set("worker", "keep_alive", "true")
        cfg.set("worker", "wait_interval", "0.2")
    ran = []
    luigi.Task.event_handler(luigi.Event.SUCCESS)(lambda t: ran.append(t.get_task_family()))
    cls = PerVideoIndex if args.layout == "per-video" else tasks.FeatureIndex
    task = cls(video_dir=args.videos, output_dir=args.out, config="demo")
    sched = (
        dict(local_scheduler=False, scheduler_host="127.0.0.1", scheduler_port=args.scheduler_port, no_lock=True)
        if args.scheduler_port
        else dict(local_scheduler=True)
    )
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    res = luigi.build([task], detailed_summary=True, **sched)
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    scheduled = len(res.worker._scheduled_tasks)  # noqa: SLF001 -- a benchmark may peek
    shard = [t for t in task.requires() if hasattr(t, "shard_size")][:1]
    print(
        "RESULT "
        + json.dumps(
            {
                "cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
                "wall": t1 - t0,
                "tasks": scheduled,
                "ran": len(ran),
                "status": res.status.name,
                "rss_mib": r1.ru_maxrss / 1024,
                "shard_size": shard[0].shard_size if shard else 1,
            }
        ),
        flush=True,
    )


# --------------------------------------------------------------------------- parent


def spawn(layout: str, k: int, videos: Path, out: Path, port: int = 0) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--child", "--layout", layout, "--k", str(k), "--videos", str(videos)]
    cmd += ["--out", str(out), "--scheduler-port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=out.parent)


def collect(proc: subprocess.Popen) -> dict:
    stdout = proc.communicate()[0]
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"benchmark child failed (exit {proc.returncode}): {stdout[-2000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def make_videos(root: Path, n: int) -> Path:
    d = root / f"videos-{n}"
    if not d.is_dir():
        d.mkdir(parents=True)
        for i in range(n):
            (d / f"v{i:06d}.mp4").touch()
    return d


def measure(root: Path, layout: str, k: int, n: int) -> dict:
    """First run, no-op rerun, rescan (index deleted) of one configuration in a fresh output dir."""
    videos = make_videos(root, n)
    out = root / f"out-{layout}-{k}-{n}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    first = collect(spawn(layout, k, videos, out))
    assert first["status"] == "SUCCESS", first
    noop = collect(spawn(layout, k, videos, out))
    for p in (out / "index").glob("*.json"):
        p.unlink()
    rescan = collect(spawn(layout, k, videos, out))
    shutil.rmtree(out, ignore_errors=True)
    return {"layout": layout, "k": k, "n": n, "first": first, "noop": noop, "rescan": rescan}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_luigid(root: Path, n: int) -> dict:
    """N videos through luigid with two workers started together (shipped [shards] settings)."""
    videos = make_videos(root, n)
    out = root / f"out-luigid-{n}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    port = _free_port()
    logs = root / "luigid-logs"
    logs.mkdir(exist_ok=True)
    sched = subprocess.Popen(
        ["luigid", "--port", str(port), "--address", "127.0.0.1", "--state-path", str(root / "luigid.state")]
        + ["--logdir", str(logs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/task_list?data={{}}", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        t0 = time.perf_counter()
        workers = [spawn("shards", 0, videos, out, port) for _ in range(2)]
        results = [collect(w) for w in workers]
        wall = time.perf_counter() - t0
    finally:
        sched.send_signal(signal.SIGTERM)
        _, _, ru = os.wait4(sched.pid, 0)
    records = len(list((out / "features").rglob("*.json")))
    shutil.rmtree(out, ignore_errors=True)
    return {
        "n": n,
        "wall": wall,
        "workers": results,
        "luigid_cpu": ru.ru_utime + ru.ru_stime,
        "luigid_rss_mib": ru.ru_maxrss / 1024,
        "records": records,
    }


def row(m: dict) -> str:
    f, z, r = m["first"], m["noop"], m["rescan"]
    name = m["layout"] if m["layout"] == "per-video" else (f"K={m['k']}" if m["k"] else "shards")
    return (
        f"{name:>9s} {m['n']:>6d} {f['shard_size']:>4d} {f['tasks']:>6d} {f['cpu']:>8.1f} "
        f"{1000 * f['cpu'] / m['n']:>8.2f} {f['wall']:>7.1f} {z['cpu']:>6.2f} {z['wall']:>6.2f} "
        f"{r['cpu']:>7.2f} {r['wall']:>7.2f} {max(f['rss_mib'], z['rss_mib'], r['rss_mib']):>6.0f}"
    )


HEADER = (
    f"{'layout':>9s} {'videos':>6s} {'K':>4s} {'tasks':>6s} {'cpu s':>8s} {'ms/video':>8s} {'wall s':>7s} "
    f"{'noop':>6s} {'(wall)':>6s} {'rescan':>7s} {'(wall)':>7s} {'MiB':>6s}"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[1000, 3000, 20000], help="N for the shipped settings")
    ap.add_argument("--baseline-sizes", type=int, nargs="*", default=[1000, 3000], help="N for one task per video")
    ap.add_argument("--sweep-size", type=int, default=0, help="N for the shard-size sweep (0: none)")
    ap.add_argument("--sweep-k", type=int, nargs="*", default=[10, 25, 50, 100, 200])
    ap.add_argument("--luigid", type=int, default=0, help="N for a luigid run with two workers (0: none)")
    ap.add_argument("--root", default="", help="scratch directory (default: a new temporary one)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--layout", default="shards", help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--videos", default="", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    ap.add_argument("--scheduler-port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    root = Path(args.root or tempfile.mkdtemp(prefix="bench_schedule_"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"scratch: {root}  (columns: CPU = user+sys of luigi.build; noop/rescan = CPU s, wall s)", flush=True)
    print(HEADER, flush=True)
    plan = [("per-video", 0, n) for n in args.baseline_sizes]
    plan += [("shards", 0, n) for n in args.sizes]
    if args.sweep_size:
        plan += [("shards", k, args.sweep_size) for k in args.sweep_k]
    try:
        for layout, k, n in plan:
            print(row(measure(root, layout, k, n)), flush=True)
        if args.luigid:
            m = measure_luigid(root, args.luigid)
            cpu = sum(w["cpu"] for w in m["workers"]) + m["luigid_cpu"]
            per_worker = " + ".join(f"{w['cpu']:.1f}" for w in m["workers"])
            print(
                f"luigid, 2 workers, {m['n']} videos: wall {m['wall']:.1f} s, CPU workers "
                f"{per_worker} s + luigid {m['luigid_cpu']:.1f} s "
                f"= {1000 * cpu / m['n']:.2f} ms/video; tasks run {[w['ran'] for w in m['workers']]}; "
                f"peak MiB workers {[round(w['rss_mib']) for w in m['workers']]}, luigid {m['luigid_rss_mib']:.0f}; "
                f"feature records {m['records']}",
                flush=True,
            )
    finally:
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
