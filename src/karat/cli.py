"""`python -m karat <command>` (or `karat <command>`): the one entry point the orchestrators call.

Pipeline stages:  fetch, prepare, train, evaluate, analyze, report
Tools:            stages (print a profile's DAG), dvc-yaml (generate dvc.yaml), validate (check params.yaml),
                  status / plan / calibrate (progress and cost of a profile: karat.pipeline.status, .plan, .calibrate)

Every stage accepts `--log PATH`: everything it prints also goes to that file (Snakemake's `log:`), and
`--params` / `--profile`, resolved through karat.config. Each stage's command-line shell is
src/karat/stages/<stage>.py; the science lives in the subpackages; this file only dispatches.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from karat.stages import GPU_STAGES, STAGES
from karat.stages import module as stage_module


class _Tee:
    """Write to the original stream and to the log file."""

    def __init__(self, stream, log):
        self._stream, self._log = stream, log

    def write(self, data):
        self._stream.write(data)
        self._log.write(data)
        return len(data)

    def flush(self):
        self._stream.flush()
        self._log.flush()

    def isatty(self):  # progress bars decide by this: the terminal decides, not the log
        return self._stream.isatty()

    def fileno(self):
        return self._stream.fileno()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _split_log(argv: list[str]) -> tuple[list[str], str | None]:
    out, log = [], None
    it = iter(argv)
    for arg in it:
        if arg == "--log":
            log = next(it, None)
            if log is None:
                raise SystemExit("--log needs a file path")
        elif arg.startswith("--log="):
            log = arg.split("=", 1)[1]
        else:
            out.append(arg)
    return out, log


def _log_traceback(log_fh, name: str, elapsed: float) -> None:
    """Write the exception being handled, with its traceback, into the stage's log file only."""
    import traceback

    log_fh.write(f"[karat] {name} failed after {elapsed:.1f} s with an unexpected error (a bug, or the process "
                 f"was interrupted); the traceback:\n")
    traceback.print_exc(file=log_fh)
    log_fh.flush()


def _run_stage(name: str, argv: list[str]) -> int:
    argv, log_path = _split_log(argv)
    from karat.utils.orchestrator import OrchestratorBusy, claim_for_dvc_stage, under_dvc
    if under_dvc():  # one orchestrator at a time per working copy (karat.utils.orchestrator)
        try:  # before the log is opened (and emptied): the other orchestrator's job may be writing it
            dvc_hold = claim_for_dvc_stage(os.environ["DVC_ROOT"])  # noqa: F841  (held until exit)
        except OrchestratorBusy as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return 2
    log_fh = None
    check = getattr(stage_module(name), "check_before_log", None)
    if log_path and check is not None:  # a stage with one writer per run: a refused second writer must not
        from karat.errors import KaratError  # empty the log its holder is writing (karat.utils.runlock)
        try:
            check(argv)
        except KaratError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return 2
        except SystemExit as exc:  # bad arguments: the stage itself says so below, in the log
            del exc
    if log_path:  # before the rest, so that a crash anywhere below leaves its traceback in the log
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        log_fh = open(log_path, "w", encoding="utf-8", buffering=1)
        sys.stdout, sys.stderr = _Tee(sys.__stdout__, log_fh), _Tee(sys.__stderr__, log_fh)
    start = time.time()
    try:
        if name in GPU_STAGES:
            from karat.pipeline import detect_gpus
            from karat.utils.gpus import claim_gpu
            gpu = claim_gpu(detect_gpus())
            if gpu is not None:
                print(f"[karat] {name}: using GPU {gpu}", file=sys.stderr, flush=True)
        start = time.time()  # the stage's own time ("finished in", read by the report), not the wait for a GPU
        code = stage_module(name).main(argv)  # prints a user-facing error and returns 2 (karat.stages._shell)
        print(f"[karat] {name} finished in {time.time() - start:.1f} s with exit code {code or 0}",
              file=sys.stderr, flush=True)
        return int(code or 0)
    except BaseException as exc:
        # Anything but a user error (those return 2 above) is a bug or a crash: its traceback goes into the
        # log too, where Snakemake's "check log file(s)" sends the reader. Python prints it on the terminal
        # when it propagates, after the streams are put back below.
        if log_fh is not None and not isinstance(exc, SystemExit):
            _log_traceback(log_fh, name, time.time() - start)
        raise
    finally:
        if log_fh is not None:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
            log_fh.close()


def _tools_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="karat", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in STAGES.items():
        sub.add_parser(name, help=help_text, add_help=False)
    p = sub.add_parser("stages", help="print the jobs of a profile as JSON (what both orchestrators run)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--profile", default=None)
    p = sub.add_parser("dvc-yaml", help="generate dvc.yaml for a profile")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--profile", default=None)
    p.add_argument("--write", action="store_true", help="write dvc.yaml (default: print it)")
    p.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml is not current")
    p.add_argument("--output", default="dvc.yaml")
    p = sub.add_parser("validate", help="validate params.yaml and expand every profile")
    p.add_argument("--params", default="params.yaml")
    p = sub.add_parser("adopt-dvc", help="check Snakemake's finished outputs and record them in dvc.lock "
                                         "(karat.pipeline.adopt), so that DVC does not redo them")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--profile", default=None)
    p.add_argument("--dry-run", action="store_true", help="check and print, commit nothing")
    p = sub.add_parser("status", help="every run of a profile: waiting, running (epoch k of E), done, failed, "
                                      "out of date; top-1, elapsed, ETA (karat.pipeline.status; reads files only)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--profile", default=None)
    p.add_argument("--watch", type=float, default=None, metavar="SECONDS", help="print again every SECONDS")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--calibration", default=None, help="a `karat calibrate` file that prices waiting runs")
    p = sub.add_parser("calibrate", help="time training / evaluation steps of every distinct configuration of a "
                                         "profile on this machine and write a dated calibration file "
                                         "(karat.pipeline.calibrate)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--profile", action="append", default=None, help="a profile (repeatable)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--output", default=None)
    p = sub.add_parser("plan", help="what a profile, or some of its tables / claims, costs: device-hours, memory, "
                                    "disk, wall time on K devices (karat.pipeline.plan)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--profile", default=None)
    p.add_argument("--calibration", default=None, help="a `karat calibrate` file")
    p.add_argument("--device", default=None, help="a shipped calibration: benchmarks/calibration/<NAME>.json")
    p.add_argument("--gpus", type=int, default=1, help="devices running runs at once (wall-time simulation)")
    p.add_argument("--tables", nargs="+", default=None, help="only what these tables / figures need (1 2 fig07)")
    p.add_argument("--claims", nargs="+", default=None, help="only what these claims need (1 12)")
    p.add_argument("--summary", action="store_true", help="totals and parts only, no line per run")
    p.add_argument("--json", action="store_true", help="print JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in STAGES:
        return _run_stage(argv[0], argv[1:])
    args = _tools_parser().parse_args(argv)
    from karat.config import ParamsError
    from karat.errors import KaratError
    try:
        if args.command == "stages":
            from dataclasses import asdict

            from karat.pipeline import stages
            print(json.dumps([asdict(s) for s in stages(args.profile, args.params)], indent=1))
        elif args.command == "dvc-yaml":
            from karat.pipeline import dvc
            text = dvc.render(args.profile, args.params)
            if args.check:
                current = Path(args.output).read_text() if Path(args.output).exists() else ""
                if current != text:
                    print(f"{args.output} is not current: run `python -m karat dvc-yaml --write"
                          f"{' --profile ' + args.profile if args.profile else ''}`", file=sys.stderr)
                    return 1
                print(f"{args.output} is current")
            elif args.write:
                dvc.write(args.output, args.profile, args.params)
                print(f"wrote {args.output}")
            else:
                sys.stdout.write(text)
        elif args.command == "validate":
            import timm.data.auto_augment  # noqa: F401  (with timm loaded, auto_augment strings get timm's own check)

            from karat.config import expand_profile, load_params
            params = load_params(args.params)
            for name in params["profiles"]:
                prof = expand_profile(params, name)
                print(f"{name}: {len(prof.runs)} runs, datasets {sorted(prof.datasets)}, "
                      f"analyses {sorted(prof.analyses)}")
            print(f"{args.params} is valid")
        elif args.command == "adopt-dvc":
            from karat.pipeline import adopt
            result = adopt.adopt(args.profile, args.params, dry_run=args.dry_run)
            print(adopt.report(result))
            return 2 if result.refused else 0
        elif args.command == "status":
            return _status(args)
        elif args.command == "calibrate":
            return _calibrate(args)
        elif args.command == "plan":
            return _plan(args)
    except (KaratError, ParamsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _status(args) -> int:
    """`karat status`: checks the options, prints once or every ``--watch`` seconds (karat.pipeline.status)."""
    from karat.errors import KaratError
    from karat.pipeline import status
    if args.watch is not None and not args.watch > 0:
        raise KaratError(f"--watch: {args.watch!r} is not a positive number of seconds")
    if args.calibration is not None and not Path(args.calibration).is_file():
        raise KaratError(f"--calibration: {args.calibration!r} does not exist (write one with `karat calibrate`, "
                         f"or use benchmarks/calibration/*.json)")
    while True:
        ps = status.profile_status(args.profile, args.params, calibration=args.calibration)
        text = json.dumps(status.to_json(ps), indent=1) if args.json else status.render(ps)
        if args.watch is None:
            print(text)
            return 0
        print("\033[2J\033[H" + text if os.isatty(1) else text + "\n", flush=True)
        try:
            time.sleep(args.watch)
        except KeyboardInterrupt:
            return 0


def _calibrate(args) -> int:
    """`karat calibrate`: times every distinct configuration of the profiles, writes the record atomically."""
    from karat.config import load_params, profile_name
    from karat.pipeline import calibrate
    from karat.utils.io import atomic_write_json
    params = load_params(args.params)
    profiles = [profile_name(params, p) for p in (args.profile or [None])]
    calibrate.check_options(args.device, args.steps, args.warmup)
    record = calibrate.calibrate(profiles, args.params, args.device, args.steps, args.warmup)
    out = args.output or f"calibration-{'-'.join(profiles)}-{args.device}-{time.strftime('%Y%m%d')}.json"
    atomic_write_json(out, record)
    print(f"wrote {out}: {len(record['configs'])} configurations on {record['device']['name']}")
    return 0


def _plan(args) -> int:
    """`karat plan`: what a profile (or some of its tables / claims) costs, as a table or JSON."""
    from karat.pipeline import plan
    pl = plan.plan(args.profile, args.params, args.calibration, args.device, args.gpus, args.tables, args.claims)
    print(json.dumps(plan.to_json(pl), indent=1) if args.json else plan.render(pl, per_run=not args.summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
