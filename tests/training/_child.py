"""Run train() on a spec file in a fresh process (used by the kill-and-resume and DDP tests).

    python _child.py SPEC.json [--slow-save SECONDS]

``--slow-save`` sleeps after every resume-state write: it holds the process in a known place (the first
epoch's state exists, the run is not finished) so the test can SIGKILL it there.
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import spec_from_json  # noqa: E402

torch.set_num_threads(1)

if __name__ == "__main__":
    spec = spec_from_json(Path(sys.argv[1]).read_text())
    if "--slow-save" in sys.argv:
        delay = float(sys.argv[sys.argv.index("--slow-save") + 1])
        from karat.training import checkpoint, loop

        original = checkpoint.save_state

        def slow_save(path, state):
            original(path, state)
            print(f"state written after epoch {state['epoch']}", flush=True)
            time.sleep(delay)

        loop.ckpt.save_state = slow_save
    from karat.training import train

    train(spec, progress=False)
