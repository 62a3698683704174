"""Equal figures are equal bytes (issue 22): DVC hashes the analysis folders, so a PDF that carries its
creation date would look changed after every identical re-run and rerun the report."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import sys
from pathlib import Path
from karat.analysis.common import pyplot, save_figure
plt = pyplot()
fig, ax = plt.subplots(figsize=(3, 2))
ax.plot([0, 1, 2], [1, 3, 2], label="G3B")
ax.imshow([[0.0, 1.0], [2.0, 3.0]], extent=(0, 2, 0, 3), alpha=0.3)
ax.set_title("loss landscape"); ax.legend()
save_figure(fig, Path(sys.argv[1]) / "fig")
"""


def test_saved_figures_are_byte_identical_across_processes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "MPLBACKEND": "Agg"}
    env.pop("SOURCE_DATE_EPOCH", None)
    digests = []
    for seed in ("1", "2"):
        out = tmp_path / seed
        out.mkdir()
        res = subprocess.run([sys.executable, "-c", CHILD, str(out)], capture_output=True, text=True,
                             env={**env, "PYTHONHASHSEED": seed}, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())})
        time.sleep(1.1)   # another second on the clock: a date in the file would differ
    assert sorted(digests[0]) == ["fig.pdf", "fig.png"]
    assert digests[0] == digests[1]
