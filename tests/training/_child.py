"""Run train() on a spec file in a fresh process (used by the kill-and-resume and DDP tests).

    python _child.py SPEC.json [--slow-save SECONDS] [--hold-at-eval N]

``--slow-save`` sleeps after every resume-state write; ``--hold-at-eval N`` sleeps in the N-th evaluation
(raw and EMA alternate, so N = 3 is epoch 2's, after its training steps and before its state is written).
Both hold the process in a known place so that the test can SIGKILL it there.
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
    if "--hold-at-eval" in sys.argv:
        hold = int(sys.argv[sys.argv.index("--hold-at-eval") + 1])
        from karat.training import loop

        original_eval, calls = loop.evaluate_model, [0]

        def held_eval(*args, **kwargs):
            calls[0] += 1
            if calls[0] == hold:
                print(f"holding in evaluation call {hold}", flush=True)
                time.sleep(600)
            return original_eval(*args, **kwargs)

        loop.evaluate_model = held_eval
    from karat.training import train

    train(spec, progress=False)
