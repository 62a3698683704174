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


# --------------------------------------------------------------------------------------------------
# the import graph of the karat package has no cycles

SRC = REPO / "src"
# Cycles in other areas, to be untangled there (issue 19 untangled karat.report and karat.attention): a cycle
# not listed here fails the test, and so does a listed one that no longer exists (delete its line).
KNOWN_CYCLES = {
    frozenset({"karat.config", "karat.config.detection", "karat.config.transfer"}),
    frozenset({"karat.data.formats", "karat.data.formats.cifar", "karat.data.formats.flowers102",
               "karat.data.formats.imagefolder", "karat.data.formats.imagenet", "karat.data.formats.mnist",
               "karat.data.formats.stl10", "karat.data.formats.svhn"}),
}


def import_graph(src: Path, package: str = "karat") -> dict[str, set]:
    """module -> the package modules it imports, from every import statement (module level or inside a function,
    since a lazy import still ties the two modules together). ``from . import x`` points at module ``x`` when it is
    one, else at the package; a parent package imported implicitly is not an edge."""
    import ast

    mods = {}
    for path in (src / package).rglob("*.py"):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)

    def known(name: str) -> str:
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    graph: dict[str, set] = {m: set() for m in mods}
    for mod, (path, is_pkg) in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target for a in node.names]
            else:
                continue
            graph[mod].update(known(t) for t in targets if t.split(".")[0] == package)
        graph[mod].discard(mod)
    return graph


def import_cycles(graph: dict[str, set]) -> list[frozenset]:
    """The strongly connected components with more than one module (Tarjan): each is a set of modules that import
    one another in a circle."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_one_that_imports_it():
    graph = import_graph(SRC)
    assert "karat.report.claims.engine" in graph and "karat.report.results" in graph["karat.report.claims.engine"]
    cycles = set(import_cycles(graph))
    assert cycles - KNOWN_CYCLES == set(), sorted(sorted(c) for c in cycles - KNOWN_CYCLES)
    assert KNOWN_CYCLES - cycles == set(), "untangled: remove from KNOWN_CYCLES " + str(KNOWN_CYCLES - cycles)


def test_the_cycle_check_finds_a_planted_cycle(tmp_path):
    pkg = tmp_path / "karat"
    (pkg / "report").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "report" / "__init__.py").write_text("")
    (pkg / "report" / "results.py").write_text("def f():\n    from .claims import x  # lazy, still a cycle\n")
    (pkg / "report" / "claims.py").write_text("from .results import f\nx = 1\n")
    (pkg / "report" / "render.py").write_text("from . import claims, results\nfrom karat.report import results\n")
    graph = import_graph(tmp_path)
    assert graph["karat.report.render"] == {"karat.report.claims", "karat.report.results"}
    assert import_cycles(graph) == [frozenset({"karat.report.results", "karat.report.claims"})]
    (pkg / "report" / "results.py").write_text("def f():\n    return 1\n")
    assert import_cycles(import_graph(tmp_path)) == []
