"""On a machine with k GPUs at most k GPU jobs run at once, and each gets its own device.

Snakemake limits concurrency through the `gpu` resource that the Snakefile sets to the number of GPUs;
device assignment is karat.utils.gpus.claim_gpu (Snakemake alone doesn't assign devices, its issue #281).
This test runs a toy workflow with the Snakefile's own resource line and the real claim_gpu on fake
devices, and checks both properties from the jobs' own records.
"""
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_snakefile_limits_gpu_jobs_to_the_gpu_count():
    text = (REPO / "Snakefile").read_text()
    assert re.search(r'workflow\.global_resources\["gpu"\] = N_GPUS', text)
    train = (REPO / "workflow/rules/train.smk").read_text()
    assert "gpu=lambda wc: stage(\"train\"" in train


def test_concurrent_jobs_never_exceed_and_never_share_gpus(tmp_path, tools):
    n_gpus, n_jobs = 2, 5
    job = tmp_path / "job.py"
    job.write_text(textwrap.dedent(f"""
        import json, os, sys, time
        sys.path.insert(0, {str(REPO / 'src')!r})
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        from pathlib import Path
        from karat.utils.gpus import claim_gpu
        gpu = claim_gpu({n_gpus}, lock_dir=Path({str(tmp_path / 'locks')!r}), poll_s=0.1)
        start = time.time(); time.sleep(1.0); end = time.time()
        Path(sys.argv[1]).write_text(json.dumps({{"gpu": gpu, "env": os.environ["CUDA_VISIBLE_DEVICES"],
                                                 "start": start, "end": end}}))
    """))
    (tmp_path / "Snakefile").write_text(textwrap.dedent(f"""
        N_GPUS = {n_gpus}
        if N_GPUS and not config.get("cluster") and "gpu" not in workflow.global_resources:
            workflow.global_resources["gpu"] = N_GPUS
        rule all:
            input: expand("out/{{i}}.json", i=range({n_jobs}))
        rule job:
            output: "out/{{i}}.json"
            resources: gpu=1
            shell: "{sys.executable} {job} {{output}}"
    """))
    subprocess.run([tools.tool("snakemake"), "--cores", str(n_jobs), "--quiet"], cwd=tmp_path, check=True,
                   capture_output=True, env=tools.env())
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "out").glob("*.json"))]
    assert len(records) == n_jobs
    for rec in records:
        assert rec["env"] == str(rec["gpu"]) and 0 <= rec["gpu"] < n_gpus
    for i, a in enumerate(records):
        overlapping = [b for b in records[i + 1:] if b["start"] < a["end"] and a["start"] < b["end"]]
        assert all(b["gpu"] != a["gpu"] for b in overlapping), "two concurrent jobs shared a GPU"
    peak = max(sum(1 for r in records if r["start"] <= t < r["end"]) for t in [r["start"] for r in records])
    assert peak <= n_gpus


def test_claim_gpu_leaves_assigned_processes_alone(monkeypatch, tmp_path):
    from karat.utils.gpus import claim_gpu
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert claim_gpu(4, lock_dir=tmp_path) is None
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert claim_gpu(0, lock_dir=tmp_path) is None
