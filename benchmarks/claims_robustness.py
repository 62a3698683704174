"""How often the claims engine gives each verdict on the `paper` profile fed the paper's own numbers plus
seed noise, and their reflection (tests/report/test_claims_paper.py builds both worlds; TEST DATA).

    python benchmarks/claims_robustness.py [--sd 0.25] [--draws 20]

For each of the 16 claims: the count of each verdict over ``draws`` noise draws (RNG seeds 100, 101, ...). A claim
with an untested part (claim 1's ~60 GB, measured by no profile) has no verdict of its own ("partly tested"); what
its tested parts say is counted in brackets.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import importlib.util
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sd", type=float, default=0.25, help="seed noise of top-1, points (default 0.25)")
    ap.add_argument("--draws", type=int, default=20)
    a = ap.parse_args()
    spec = importlib.util.spec_from_file_location("claims_paper", REPO / "tests/report/test_claims_paper.py")
    world = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(world)
    from karat.report import claims as C

    world.NOISE_SD = a.sd
    counts = {False: collections.Counter(), True: collections.Counter()}
    real = C.full_rank_counts()
    for seed in range(100, 100 + a.draws):
        for contradict in (False, True):
            with tempfile.TemporaryDirectory() as d:
                results = world.paper_world(Path(d), contradict, seed)
                for c in C.evaluate_claims(results, full_rank=dict(world.WRONG_COUNTS) if contradict else real):
                    v = c.verdict if c.verdict != C.PARTLY else f"partly tested [{c.tested_verdict}]"
                    counts[contradict][(c.number, v)] += 1
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; noise sd {a.sd} points, "
          f"{a.draws} draws")
    for contradict, name in ((False, "paper's numbers"), (True, "reflected numbers")):
        print(f"{name}:")
        for n in range(1, 17):
            got = {v: k for (num, v), k in counts[contradict].items() if num == n}
            print(f"  claim {n:2d}: " + ", ".join(f"{v} {k}" for v, k in sorted(got.items())))


if __name__ == "__main__":
    main()
