"""Run train_detection() on a spec file in a fresh process (the kill-and-resume test).

    python _child.py SPEC.json [--hold-after-save ITERATION]

``--hold-after-save K`` sleeps right after the resume state of iteration K is written (printing a line), so
that the test can SIGKILL the process there, mid-run.
"""
import json
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(1)

if __name__ == "__main__":
    from karat.config.detection import DetectionRunSpec
    from karat.training import detection

    raw = json.loads(Path(sys.argv[1]).read_text())
    for key in ("prepared_dir", "out_dir", "state_dir"):
        raw[key] = Path(raw[key])
    spec = DetectionRunSpec(**raw)
    if "--hold-after-save" in sys.argv:
        hold = int(sys.argv[sys.argv.index("--hold-after-save") + 1])
        original = detection.ckpt.save_state

        def held_save(path, state):
            original(path, state)
            print(f"state written after iteration {state['iteration']}", flush=True)
            if state["iteration"] == hold:
                time.sleep(600)

        detection.ckpt.save_state = held_save
    detection.train_detection(spec, progress=False)
    print("done", flush=True)
