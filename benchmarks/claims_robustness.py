"""How often the claims engine gives each verdict on the `paper` profile fed the paper's own numbers plus
seed noise, and their reflection (tests/report/test_claims_paper.py builds both worlds; TEST DATA).

    python benchmarks/claims_robustness.py [--sd 0.25] [--draws 20]

For each claim: the count of each verdict over ``draws`` noise draws (RNG seeds 100, 101, ...).
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
    real_counts = C.full_rank_counts
    counts = {False: collections.Counter(), True: collections.Counter()}
    for seed in range(100, 100 + a.draws):
        for contradict in (False, True):
            C.full_rank_counts = (lambda: dict(world.WRONG_COUNTS)) if contradict else real_counts
            with tempfile.TemporaryDirectory() as d:
                for c in C.evaluate_claims(world.paper_world(Path(d), contradict, seed)):
                    counts[contradict][(c.number, c.verdict)] += 1
    C.full_rank_counts = real_counts
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; noise sd {a.sd} points, "
          f"{a.draws} draws")
    for contradict, name in ((False, "paper's numbers"), (True, "reflected numbers")):
        print(f"{name}:")
        for n in range(1, 17):
            got = {v: k for (num, v), k in counts[contradict].items() if num == n}
            print(f"  claim {n:2d}: " + ", ".join(f"{v} {k}" for v, k in sorted(got.items())))


if __name__ == "__main__":
    main()
