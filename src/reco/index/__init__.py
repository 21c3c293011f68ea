"""Retrieval index over image collections: build (local or Ray), store, search."""

from .build import build_index
from .image_index import ImageIndex
from .sources import SourceItem, list_source

__all__ = ["ImageIndex", "SourceItem", "build_index", "list_source"]
