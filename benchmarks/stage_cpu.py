"""CPU time of every stage of a profile, run one after the other in dependency order (no orchestrator).

    python benchmarks/stage_cpu.py ci                               # the stages as the profile runs them
    KARAT_COMPILE_KERNELS=0 python benchmarks/stage_cpu.py ci       # ... forcing eager kernels everywhere

Run it in a fresh copy of the repository (it writes the profile's data, runs and results). Prints each stage's
wall and CPU (user + system of its process and threads) seconds and the totals: the numbers the `kernels`
ASSUMPTION of the ci profile in params.yaml quotes (454 s compiled, 378 s eager; 2026-12-07, 2-core AMD EPYC,
warm inductor cache).
"""
import json
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


def main(profile: str) -> int:
    stages = json.loads(subprocess.run([sys.executable, "-m", "karat", "stages", "--profile", profile],
                                       capture_output=True, text=True, check=True).stdout)
    wall = cpu = 0.0
    for s in ordered(stages):
        r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
        res = subprocess.run(s["cmd"], shell=True, capture_output=True, text=True)
        r1, dt = resource.getrusage(resource.RUSAGE_CHILDREN), time.time() - t0
        c = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        wall, cpu = wall + dt, cpu + c
        print(f"{s['name']:80s} wall {dt:6.1f} s  cpu {c:6.1f} s", flush=True)
        if res.returncode:
            print(res.stderr[-2000:], file=sys.stderr)
            return 1
    print(f"TOTAL wall {wall:.1f} s  cpu {cpu:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "ci"))
