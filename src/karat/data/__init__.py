"""Data stages: fetch (download/verify/extract or a local copy), prepare (compact arrays + manifest),
loading (transforms, mixup/cutmix, device-resident fast path). See docs/DATA.md."""
from .fetch import ChecksumError, FetchError, fetch_dataset
from .prepare import PreparedDataset, load_prepared, prepare_dataset, stratified_indices
from .recipe import validate_data_recipe
from .loading import build_eval_loader, build_train_loader

__all__ = ["ChecksumError", "FetchError", "fetch_dataset", "PreparedDataset", "load_prepared",
           "prepare_dataset", "stratified_indices", "validate_data_recipe", "build_train_loader",
           "build_eval_loader"]
