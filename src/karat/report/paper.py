"""The paper's tables as data (``karat/report/paper/*.yaml``), transcribed once from PAPER.md §4.

The report never retypes a paper number: every "paper" value it prints comes from :func:`load_table`.
A results table is a grid of :class:`PaperCell`; each cell carries the key that maps it to our runs
(model family, attention label, dataset, metric, experiment) and the paper's value (None where the paper
prints "–").
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PAPER_DIR = Path(__file__).with_name("paper")
# Tables whose numbers are results (comparable with runs), in report order; Fig. 7's readings are a table too.
RESULT_TABLES = (1, 2, 3, 4, 7, 8, 12, 13, 14, 15, 16, 17, 18, 19, 20, "fig07")
ALL_TABLES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, "fig07")
METRICS = {
    "top1": "Top-1 accuracy (%)", "top5": "Top-5 accuracy (%)",
    "params_total_m": "parameters, total (millions)", "params_attn_m": "attention-activation parameters (millions)",
    "gflops_total": "GFLOPs, total (one image)", "gflops_attn": "GFLOPs of the attention activation",
    "memory_gb": "training memory (GB)", "train_hours": "training wall time (hours)",
    "throughput_img_s": "inference throughput (images/s)",
    "box_ap": "box AP", "box_ap50": "box AP50", "box_ap75": "box AP75",
    "mask_ap": "mask AP", "mask_ap50": "mask AP50", "mask_ap75": "mask AP75",
}
METRIC_DECIMALS = {"top1": 2, "top5": 2, "params_total_m": 2, "params_attn_m": 2, "gflops_total": 3,
                   "gflops_attn": 3, "memory_gb": 2, "train_hours": 1, "throughput_img_s": 1,
                   "box_ap": 2, "box_ap50": 2, "box_ap75": 2, "mask_ap": 2, "mask_ap50": 2, "mask_ap75": 2}
EXPERIMENTS = ("from_scratch", "transfer", "attention_transfer", "detection", "bspline_kan")
_KEY_FIELDS = ("model", "attention", "dataset", "metric", "experiment")


class PaperDataError(ValueError):
    """A paper data file is malformed; the message names the file, the field and the value."""


@dataclass(frozen=True)
class PaperColumn:
    key: str
    header: str
    fields: dict                       # model / attention / dataset / metric (templates allowed)
    decimals: int | None = None        # how the paper prints the column (None: the metric's default)


@dataclass(frozen=True)
class PaperCell:
    table: str                         # "1", "15", "fig07"
    row: int                           # index into PaperTable.rows
    column: str                        # PaperColumn.key
    row_label: str
    column_header: str
    model: str                         # family: vit_tiny, vit_small, vit_base, convit_tiny, ...
    attention: str                     # params.yaml attentions label ("softmax", "G3B", ...)
    dataset: str | None
    metric: str
    experiment: str
    value: float | None                # None: the paper prints "–" (not reported)
    extra: dict = field(default_factory=dict)   # other row fields (init, transfer_from, r, num_classes...)
    decimals: int = 2                  # as printed in the paper

    def format_paper(self) -> str:
        if self.value is None:
            return "–"
        # Table 13 prints the softmax models' attention-activation parameters as a bare "0".
        return "0" if self.value == 0 else f"{self.value:.{self.decimals}f}"

    @property
    def reported(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class PaperTable:
    number: str
    title: str
    kind: str                          # results | hyperparameters | text
    source: str
    versions: dict
    notes: tuple
    experiment: str | None
    reading: bool                      # True: pixel readings of a figure, not printed numbers
    columns: tuple                     # PaperColumn
    rows: tuple                        # dict per row (label + fields + values)
    values: dict                       # hyperparameter tables
    path: Path

    @property
    def name(self) -> str:
        return f"Fig. {self.number[3:].lstrip('0')}" if self.number.startswith("fig") else f"Table {self.number}"

    @property
    def slug(self) -> str:
        return self.number if self.number.startswith("fig") else f"table{int(self.number):02d}"

    def cells(self) -> list[PaperCell]:
        """Every (row, column) of a results table, with its run key resolved."""
        if self.kind != "results":
            return []
        out = []
        for ri, row in enumerate(self.rows):
            values = row.get("values", {})
            unknown = set(values) - {c.key for c in self.columns}
            if unknown:
                raise PaperDataError(f"{self.path.name}: row {row.get('label')!r} has values for unknown "
                                     f"column(s) {sorted(unknown)}; columns: {[c.key for c in self.columns]}")
            row_fields = {k: v for k, v in row.items() if k not in ("values", "label")}
            for col in self.columns:
                key = {**row_fields}
                for name, value in col.fields.items():
                    key[name] = value.format(**row_fields) if isinstance(value, str) and "{" in value else value
                key.setdefault("experiment", self.experiment or "from_scratch")
                missing = [f for f in ("model", "attention", "metric") if key.get(f) is None]
                if missing:
                    raise PaperDataError(f"{self.path.name}: cell ({row.get('label')!r}, {col.key!r}) has no "
                                         f"{missing} from its row or column")
                if key["metric"] not in METRICS:
                    raise PaperDataError(f"{self.path.name}: column {col.key!r} metric {key['metric']!r} is not "
                                         f"one of {sorted(METRICS)}")
                if key["experiment"] not in EXPERIMENTS:
                    raise PaperDataError(f"{self.path.name}: experiment {key['experiment']!r} is not one of "
                                         f"{list(EXPERIMENTS)}")
                value = values.get(col.key)
                out.append(PaperCell(
                    table=self.number, row=ri, column=col.key, row_label=str(row.get("label")),
                    column_header=col.header, model=key["model"], attention=str(key["attention"]),
                    dataset=key.get("dataset"), metric=key["metric"], experiment=key["experiment"],
                    value=None if value is None else float(value),
                    decimals=col.decimals if col.decimals is not None else METRIC_DECIMALS[key["metric"]],
                    extra={k: v for k, v in key.items() if k not in _KEY_FIELDS}))
        return out

    def value(self, row_label: str, column: str, occurrence: int = 0) -> float | None:
        """The paper's number at (row label, column key); ``occurrence`` picks among repeated labels."""
        matches = [r for r in self.rows if r.get("label") == row_label]
        if len(matches) <= occurrence:
            raise KeyError(f"{self.name}: no row {row_label!r} (occurrence {occurrence}); rows: "
                           f"{[r.get('label') for r in self.rows]}")
        if column not in {c.key for c in self.columns}:
            raise KeyError(f"{self.name}: no column {column!r}; columns: {[c.key for c in self.columns]}")
        v = matches[occurrence].get("values", {}).get(column)
        return None if v is None else float(v)


def _normalise_number(number: int | str) -> str:
    if isinstance(number, int) or (isinstance(number, str) and number.isdigit()):
        return str(int(number))
    if isinstance(number, str) and number.lower() in ("fig07", "fig7", "7f"):
        return "fig07"
    raise PaperDataError(f"table number {number!r} is not one of {list(ALL_TABLES)}")


def _file_for(number: str) -> Path:
    return PAPER_DIR / ("fig07.yaml" if number == "fig07" else f"table{int(number):02d}.yaml")


@functools.lru_cache(maxsize=None)
def load_table(number: int | str) -> PaperTable:
    """The transcribed table ``number`` (1..20 or "fig07"), validated."""
    number = _normalise_number(number)
    path = _file_for(number)
    if not path.is_file():
        raise PaperDataError(f"no transcription of table {number!r} ({path} does not exist); transcribed: "
                             f"{list(ALL_TABLES)}")
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    for required in ("table", "title", "kind", "source", "versions"):
        if required not in raw:
            raise PaperDataError(f"{path.name}: missing field {required!r}")
    versions = raw["versions"]
    if not isinstance(versions, dict) or set(versions) != {"v1", "v2", "v3"} or \
            not all(isinstance(v, str) for v in versions.values()):
        raise PaperDataError(f"{path.name}: versions must map v1, v2, v3 to text, got {versions!r}")
    notes = raw.get("notes", []) or []
    bad = [n for n in notes if not isinstance(n, str)]
    if bad:
        raise PaperDataError(f"{path.name}: notes must be text (quote them in YAML), got {bad!r}")
    if str(raw["table"]) != number:
        raise PaperDataError(f"{path.name}: field table is {raw['table']!r}, expected {number!r}")
    if raw["kind"] not in ("results", "hyperparameters", "text"):
        raise PaperDataError(f"{path.name}: kind {raw['kind']!r} is not results | hyperparameters | text")
    columns = []
    if raw["kind"] == "results":
        for col in raw.get("columns", []):
            if "key" not in col or "header" not in col:
                raise PaperDataError(f"{path.name}: column {col!r} needs 'key' and 'header'")
            columns.append(PaperColumn(key=col["key"], header=col["header"], decimals=col.get("decimals"),
                                       fields={k: v for k, v in col.items()
                                               if k not in ("key", "header", "decimals")}))
    table = PaperTable(
        number=number, title=raw["title"], kind=raw["kind"], source=raw["source"], versions=raw["versions"],
        notes=tuple(raw.get("notes", []) or []), experiment=raw.get("experiment"),
        reading=bool(raw.get("reading", False)), columns=tuple(columns), rows=tuple(raw.get("rows", []) or []),
        values=dict(raw.get("values", {}) or {}), path=path)
    table.cells()  # validates every cell key now rather than at render time
    return table


def all_tables() -> list[PaperTable]:
    return [load_table(n) for n in ALL_TABLES]


def paper_recipe() -> dict[str, Any]:
    """Table 5's machine-readable values (what our configuration is compared with)."""
    return dict(load_table(5).values)
