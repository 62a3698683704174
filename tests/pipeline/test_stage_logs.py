"""The job's log file (`--log`, Snakemake's `log:`) holds what the job said, a crash included (issue 22): an
unexpected exception leaves its full traceback there, not only on the terminal (Snakemake says "check log
file(s)"), while a user error stays one line `error: ...` (exit 2)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from karat.errors import KaratError
from karat.stages._shell import user_errors

REPO = Path(__file__).resolve().parents[2]


def _stage_main(exc: BaseException):
    @user_errors
    def main(argv=None):
        print("[fetch] working", flush=True)
        raise exc
    return main


def test_an_unexpected_error_leaves_its_traceback_in_the_log(tmp_path, monkeypatch):
    import karat.stages.fetch as fetch
    from karat.cli import main

    monkeypatch.setattr(fetch, "main", _stage_main(ZeroDivisionError("boom in the science")))
    log = tmp_path / "logs/fetch.log"
    with pytest.raises(ZeroDivisionError):   # still propagates: the terminal gets it and the exit code is 1
        main(["fetch", "--dataset", "x", "--log", str(log)])
    text = log.read_text()
    assert "[fetch] working" in text
    assert "[karat] fetch failed after" in text and "unexpected error" in text
    assert "Traceback (most recent call last):" in text
    assert "ZeroDivisionError: boom in the science" in text
    assert "in main\n" in text and "raise exc" in text   # the frames, not only the last line
    assert sys.stdout is sys.__stdout__ and sys.stderr is sys.__stderr__   # streams put back


def test_a_user_error_stays_one_line_in_the_log(tmp_path, monkeypatch):
    import karat.stages.fetch as fetch
    from karat.cli import main

    monkeypatch.setattr(fetch, "main", _stage_main(KaratError("dataset 'x' is not in params.yaml")))
    log = tmp_path / "logs/fetch.log"
    assert main(["fetch", "--log", str(log)]) == 2
    text = log.read_text()
    assert "error: dataset 'x' is not in params.yaml\n" in text
    assert "Traceback" not in text and "failed after" not in text


def test_a_crashing_stage_process_writes_the_traceback_once_to_each(tmp_path):
    """A real `python -m karat` process: the traceback in the log file and once on the terminal."""
    code = ("import sys, karat.stages.fetch as f\n"
            "from karat.stages._shell import user_errors\n"
            "f.main = user_errors(lambda argv=None: {}['missing key'])\n"
            "from karat.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    log = tmp_path / "job.log"
    res = subprocess.run([sys.executable, "-c", code, "fetch", "--log", str(log)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO / "src")}, timeout=120)
    assert res.returncode == 1
    assert res.stderr.count("Traceback (most recent call last):") == 1
    assert "KeyError: 'missing key'" in res.stderr
    text = log.read_text()
    assert text.count("Traceback (most recent call last):") == 1 and "KeyError: 'missing key'" in text
