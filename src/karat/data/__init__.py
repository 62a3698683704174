"""Data stages: fetch (download/verify/extract or a local copy), prepare (compact arrays + manifest),
loading (transforms, mixup/cutmix, device-resident fast path). See docs/DATA.md.

Names are imported lazily: `karat.data.recipe` (validation) is used by karat.config without torch."""
import importlib

_WHERE = {
    "ChecksumError": "fetch", "FetchError": "fetch", "fetch_dataset": "fetch",
    "PreparedDataset": "prepare", "load_prepared": "prepare", "prepare_dataset": "prepare",
    "stratified_indices": "prepare", "validate_data_recipe": "recipe",
    "build_eval_loader": "loading", "build_train_loader": "loading",
}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'karat.data' has no attribute {name!r}")
