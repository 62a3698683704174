"""docs/ARCHITECTURE.md stays true: every repository path and every `karat.*` module it names exists."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "ARCHITECTURE.md"
# Folders the pipeline writes (not in the repository): the page describes their layout.
ARTIFACT_ROOTS = ("data/", "runs/", "logs/", ".karat_state/", "snapshots/", "dvc_plots/", "results/<")
TOP_LEVEL = ("src/", "tests/", "docs/", "workflow/", "benchmarks/", "scripts/", "results/")
PATH = re.compile(r"(?<![\w./<-])((?:[\w.-]+/)+[\w.*-]*)")
FILE = re.compile(r"(?<![\w./-])([\w-]+\.(?:yaml|py|md|smk|toml|sh))\b")
MODULE = re.compile(r"\bkarat(?:\.[A-Za-z_]\w*)+\*?")


def _tree_paths(text: str) -> list[str]:
    """Entries of the layout block: `src/karat/` on one line, its entries indented below it."""
    out, parent = [], ""
    parts = text.split("```", 2)
    block = parts[1] if len(parts) > 2 else ""
    for line in block.splitlines():
        if not line.strip():
            continue
        name = line.split()[0].rstrip(",")
        if not line.startswith(" "):
            parent = name if name.endswith("/") else ""
        elif line.startswith("  ") and not line.startswith("   ") and parent:
            out.append(parent + name)
    return out


def named_paths(text: str) -> set[str]:
    """Repository paths the page names: path-like tokens under a top-level folder, file names at the top
    level (params.yaml, Snakefile ...), and the layout block's entries."""
    found = set(_tree_paths(text))
    for m in PATH.finditer(text):
        tok = m.group(1)
        if tok.startswith(TOP_LEVEL) and not tok.startswith(ARTIFACT_ROOTS):
            found.add(tok)
    found.update(m.group(1) for m in FILE.finditer(text) if m.group(1) in {p.name for p in REPO.iterdir()}
                 or m.group(1) in ("params.yaml", "dvc.yaml"))
    found.update(w for w in ("Snakefile",) if w in text)
    return found


def _resolves(name: str) -> bool:
    """``karat.a.b.c``: the longest importable module prefix, then attributes (``x*``: some attribute
    starting with x)."""
    parts = name.rstrip("*").split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for j, attr in enumerate(parts[i:], start=i):
            if j == len(parts) - 1 and name.endswith("*"):
                return any(a.startswith(attr) for a in dir(obj))
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def missing(text: str, root: Path = REPO) -> list[str]:
    """The named paths that do not exist (globs must match something), and the `karat.x.y` names that do
    not import."""
    gone = []
    for path in sorted(named_paths(text)):
        clean = path.split("<")[0]
        if "*" in clean or "{" in clean:
            if not list(root.glob(clean.replace("{", "*").split("}")[0] + ("*" if "{" in clean else ""))):
                gone.append(path)
        elif not (root / clean).exists():
            gone.append(path)
    for name in sorted(set(MODULE.findall(text))):
        if not _resolves(name):
            gone.append(name)
    return gone


def test_every_path_the_architecture_page_names_exists():
    text = PAGE.read_text(encoding="utf-8")
    names = named_paths(text)
    # the parser finds what the page is about (else the check would pass on nothing)
    for expected in ("src/karat/config/params.schema.yaml", "src/karat/stages/", "src/karat/errors.py",
                     "workflow/rules/", "params.yaml", "Snakefile", "tests/pipeline/test_dvc_artifacts.py"):
        assert expected in names or any(n.startswith(expected) for n in names), expected
    assert missing(text) == []


def test_the_check_finds_a_path_that_does_not_exist():
    old = ("params.yaml                 the experiment grid (single source of truth), validated by\n"
           "workflow/schemas/params.schema.yaml\n")
    assert missing(old) == ["workflow/schemas/params.schema.yaml"]
    assert missing("the shell is `src/karat/training/_stage.py`") == ["src/karat/training/_stage.py"]
    assert missing("```\nsrc/karat/\n  nowhere/    x\n```\n") == ["src/karat/nowhere/"]
    assert missing("`karat.nosuch.thing(x)` and `karat.training.evaluate`") == ["karat.nosuch.thing"]
    assert missing("`karat.training.evaluation.no_such_function`, `karat.utils.io.atomic_write*`") == [
        "karat.training.evaluation.no_such_function"]
