"""Evaluation datasets in their official on-disk layouts, opened from one-string specs."""

from .registry import list_datasets, open_dataset, parse_dataset_spec

__all__ = ["list_datasets", "open_dataset", "parse_dataset_spec"]
