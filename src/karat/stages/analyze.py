"""``python -m karat analyze <name> --run R`` (``analyze compute``: per profile): one analysis of one run.

    python -m karat analyze <name> --params params.yaml --profile P --run R
    python -m karat analyze compute --params params.yaml --profile P

The science is ``karat.analysis.<name>.run(spec, out_dir, options)``; the options come from params.yaml
(``profiles.<P>.analyses``).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ._shell import user_errors


@user_errors
def main(argv: list[str] | None = None) -> int:
    from karat import analysis, config

    parser = argparse.ArgumentParser(prog="karat analyze", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=analysis.ANALYSES)
    parser.add_argument("--params", default=config.DEFAULT_PARAMS)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--run", default=None, help="run id (every analysis except compute)")
    parser.add_argument("--out", default=None, help="output folder (default results/<profile>/analysis/...)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    args = parser.parse_args(argv)

    prof = config.load_profile(args.params, args.profile)
    options = dict(prof.analysis_options.get(args.name, {}))
    if args.name not in prof.analysis_options:
        parser.error(f"profile {prof.name!r} does not configure analysis {args.name!r} "
                     f"(params.yaml profiles.{prof.name}.analyses)")
    mod = analysis.module(args.name)
    if args.device:
        if "device" not in mod.DEFAULTS:
            parser.error(f"analysis {args.name} runs no model: --device does not apply")
        options["device"] = args.device
    t0 = time.time()
    if args.name == "compute":
        if args.run:
            parser.error("compute is per profile: drop --run")
        params = config.load_params(args.params)
        out = Path(args.out) if args.out else analysis.output_dir(prof, "compute")
        mod.run(None, out, options, attention_table=params["attentions"])
    else:
        if not args.run:
            parser.error(f"analysis {args.name} needs --run (one of {prof.analyses.get(args.name, [])})")
        if args.run not in prof.runs:
            parser.error(f"--run {args.run!r} is not a run of profile {prof.name!r}; runs: {list(prof.runs)}")
        spec = prof.runs[args.run]
        out = Path(args.out) if args.out else analysis.output_dir(prof, args.name, args.run)
        mod.run(spec, out, options)
    print(f"[karat] analyze {args.name}: wrote {out} in {time.time() - t0:.1f}s", flush=True)
    return 0
