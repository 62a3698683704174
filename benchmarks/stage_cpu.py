"""CPU time of every stage of a profile, run one after the other in dependency order (no orchestrator).

    python benchmarks/stage_cpu.py ci                               # the stages as the profile runs them
    KARAT_COMPILE_KERNELS=0 python benchmarks/stage_cpu.py ci       # ... forcing eager kernels everywhere
    python benchmarks/stage_cpu.py ci --busy 2 --threads 1 --only train-cifar10_fixture-vit_tiny_patch4_32-softmax-s0
        # one stage (and the stages it needs, run first but not timed) beside 2 busy processes, at 1 thread

Run it in a fresh copy of the repository (it writes the profile's data, runs and results). Prints each stage's
wall and CPU (user + system of its process and threads) seconds and the totals: the numbers the `kernels`
ASSUMPTION of the ci profile in params.yaml quotes (454 s compiled, 378 s eager; 2026-12-07, 2-core AMD EPYC,
warm inductor cache), and the `threads` ASSUMPTION of the ci profile (a training beside two busy processes:
12.0-14.5 s of CPU at 2 threads, 8.4-8.7 s at 1, two runs each; 2026-12-08).
"""
import argparse
import json
import re
import resource
import subprocess
import sys
import time


def ordered(stages: list[dict]) -> list[dict]:
    made_by = {o: s["name"] for s in stages for o in s["outs"]}
    done, out, pending = set(), [], list(stages)
    while pending:
        ready = next((s for s in pending if {made_by[d] for d in s["deps"] if d in made_by} <= done), None)
        if ready is None:
            raise SystemExit("the stages form a cycle")
        out.append(ready)
        done.add(ready["name"])
        pending.remove(ready)
    return out


def needed(stages: list[dict], name: str) -> set[str]:
    """``name`` and every stage it depends on."""
    made_by = {o: s["name"] for s in stages for o in s["outs"]}
    by_name = {s["name"]: s for s in stages}
    out, todo = set(), [name]
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            todo += [made_by[d] for d in by_name[n]["deps"] if d in made_by]
    return out


def main(profile: str, only: str | None = None, busy: int = 0, threads: int | None = None) -> int:
    stages = json.loads(subprocess.run([sys.executable, "-m", "karat", "stages", "--profile", profile],
                                       capture_output=True, text=True, check=True).stdout)
    run = ordered(stages)
    if only is not None:
        if only not in {s["name"] for s in stages}:
            raise SystemExit(f"--only {only!r} is not a stage of profile {profile!r}")
        keep = needed(stages, only)
        run = [s for s in run if s["name"] in keep]
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    wall = cpu = 0.0
    try:
        for s in run:
            cmd = s["cmd"]
            if threads is not None:
                cmd = re.sub(r"--threads \d+", f"--threads {threads}", cmd)
            r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
            res = subprocess.run(cmd, shell=True, capture_output=True, text=True)
            r1, dt = resource.getrusage(resource.RUSAGE_CHILDREN), time.time() - t0
            c = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
            if res.returncode:
                print(res.stderr[-2000:], file=sys.stderr)
                return 1
            if only is not None and s["name"] != only:
                continue   # made first, not timed
            wall, cpu = wall + dt, cpu + c
            print(f"{s['name']:80s} wall {dt:6.1f} s  cpu {c:6.1f} s", flush=True)
    finally:
        for h in hogs:
            h.kill()
    print(f"TOTAL wall {wall:.1f} s  cpu {cpu:.1f} s" + (f"  (beside {busy} busy processes)" if busy else ""))
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("profile", nargs="?", default="ci")
    ap.add_argument("--only", help="time this stage only (the stages it needs run first, untimed)")
    ap.add_argument("--busy", type=int, default=0, help="busy-loop processes running beside the stages")
    ap.add_argument("--threads", type=int, default=None, help="replace the torch stages' --threads N")
    a = ap.parse_args()
    sys.exit(main(a.profile, a.only, a.busy, a.threads))
