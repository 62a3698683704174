"""Is `karat plan` right? Calibrate on this machine, train every run of a profile, print measured / planned.

    nice -n 10 python benchmarks/plan_accuracy.py                      # the demo profile (about 15 min idle)
    python benchmarks/plan_accuracy.py --profile ci                      # minutes
    python benchmarks/plan_accuracy.py --profile demo --epochs 2         # the demo with fewer epochs
    python benchmarks/plan_accuracy.py --runs /tmp/demo                  # calibrate, judge a finished run
    python benchmarks/plan_accuracy.py --runs /tmp/demo --calibration benchmarks/calibration/cpu-2core.json

With ``--runs DIR`` (a finished pipeline run of the profile, e.g. a fresh clone after `scripts/run_pipeline.sh`)
nothing is trained: the calibration runs in DIR with DIR's params.yaml, and the measured seconds are read from
DIR's runs (the same log.csv sums); the stage wall column is then the run's train.json wall time.

In a fresh working folder (``--workdir``, default a temporary one) with a copy of params.yaml (its local data
paths made absolute; ``--epochs`` overrides the profile's epochs): fetch and prepare the profile's data, run
`karat calibrate` for the profile, then every train stage of the profile in DAG order (the commands the
orchestrators run), one at a time. Per run it compares the train stage's planned seconds (karat.pipeline.plan:
epochs x (training images x train rate + evaluations x test images x eval rate)) with the measured sum of its
``epoch_time_s`` in log.csv (training, both evaluations and checkpointing of every epoch; process start-up and
the evaluate stage are not in either). The target is measured / planned within 1 +- 0.3. The 1-minute load
average before and after is printed: on a shared machine both numbers are slower than the machine alone.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def _params_copy(work: Path, profile: str, epochs: int | None) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for spec in params["datasets"].values():
        spec["local"] = [str((REPO / p).resolve()) if not os.path.isabs(p) else p for p in spec.get("local", [])]
    if epochs is not None:
        over = params["profiles"][profile].setdefault("overrides", {})
        over.setdefault("train", {})["epochs"] = epochs
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _run(cmd: str, work: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    t0 = time.time()
    res = subprocess.run(shlex.split(cmd), cwd=work, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"failed ({res.returncode}): {cmd}\n{res.stderr[-3000:]}")
    return time.time() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    ap.add_argument("--steps", type=int, default=3, help="calibration steps per configuration")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--runs", default=None, help="a finished pipeline run folder of the profile: judge its runs "
                                                 "instead of training them here")
    ap.add_argument("--calibration", default=None, help="price with this calibration file instead of calibrating "
                                                        "here first")
    args = ap.parse_args(argv)
    if args.calibration is not None and not Path(args.calibration).is_file():
        ap.error(f"--calibration: {args.calibration!r} does not exist")
    if args.runs is not None and args.epochs is not None:
        ap.error("--epochs: not with --runs (the finished runs have the epochs they ran)")

    from karat.pipeline import plan as plan_mod
    from karat.pipeline import stages

    if args.runs is not None:
        work = Path(args.runs).resolve()
        params = work / "params.yaml"
        if not params.is_file():
            ap.error(f"--runs: {str(work)!r} has no params.yaml; allowed: a pipeline run folder (a clone)")
    else:
        work = Path(args.workdir or tempfile.mkdtemp(prefix="plan_accuracy-"))
        work.mkdir(parents=True, exist_ok=True)
        params = _params_copy(work, args.profile, args.epochs)
    load_before = os.getloadavg()[0]
    jobs = stages(args.profile, str(params))
    for s in jobs:
        if s.kind in ("fetch", "prepare") and args.runs is None:
            _run(s.cmd, work)
    if args.calibration is not None:
        cal_path, t_cal = Path(args.calibration).resolve(), 0.0
    else:
        cal_path = work / "calibration.json"
        t_cal = _run(f"{sys.executable} -m karat calibrate --params {params} --profile {args.profile} "
                     f"--steps {args.steps} --output {cal_path}", work)
    os.chdir(work)   # the plan reads the profile's paths relative to the working copy
    plan = plan_mod.plan(args.profile, str(params), calibration=str(cal_path))
    planned = {r.run_id: r for r in plan.runs}
    rows = []
    for s in jobs:
        if s.kind != "train":
            continue
        rid = s.wildcards["run"]
        if args.runs is None:
            wall = _run(s.cmd.replace("python -m karat", f"{sys.executable} -m karat", 1), work)
        else:
            done = work / "runs" / args.profile / rid / "train.json"
            if not done.is_file():
                raise SystemExit(f"--runs: {rid} has not finished in {work} (no {done.name})")
            wall = float(json.loads(done.read_text())["wall_time_s"])
        with open(work / "runs" / args.profile / rid / "log.csv", newline="") as fh:
            measured = sum(float(r["epoch_time_s"]) for r in csv.DictReader(fh))
        rows.append((rid, planned[rid].train_s, measured, wall))
        print(f"  {rid}: planned {planned[rid].train_s:.1f} s, measured {measured:.1f} s", flush=True)
    load_after = os.getloadavg()[0]

    print(f"\nplan accuracy: profile {args.profile}" + (f" (epochs {args.epochs})" if args.epochs else "")
          + (f" (finished runs in {work})" if args.runs else "")
          + f", {time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, {os.cpu_count()} cores, calibration "
          + (f"{cal_path} (given)" if args.calibration else f"{t_cal:.0f} s ({args.steps} steps)")
          + f", load average {load_before:.1f} before / {load_after:.1f} after")
    print("| run | planned train s | measured epochs s | measured / planned | stage wall s |")
    print("|---|---:|---:|---:|---:|")
    for rid, p, m, w in rows:
        print(f"| {rid} | {p:.1f} | {m:.1f} | {m / p:.2f} | {w:.1f} |")
    total_p, total_m = sum(r[1] for r in rows), sum(r[2] for r in rows)
    within = sum(1 for r in rows if 0.7 <= r[2] / r[1] <= 1.3)
    print(f"| total | {total_p:.1f} | {total_m:.1f} | {total_m / total_p:.2f} | {sum(r[3] for r in rows):.1f} |")
    print(f"{within} of {len(rows)} runs within +-30%")
    (work / "plan_accuracy.json").write_text(json.dumps({"rows": rows, "load": [load_before, load_after]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
