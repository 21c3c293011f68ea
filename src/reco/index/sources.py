"""Image collections as an ordered list of items: a folder, a text file of paths, or webdataset tars."""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import EmptyInputError, InputNotFoundError, InvalidInputError
from ..core.imageio import IMAGE_SUFFIXES
from ..core.paths import with_utf8_names


@dataclass(frozen=True)
class SourceItem:
    """One image of a collection. ``id`` is unique and stable; tar members carry their byte range."""

    id: str
    path: str
    offset: int = -1  # >= 0: the member's data starts here in ``path`` (a tar file)
    size: int = -1

    def read_bytes(self) -> bytes:
        if self.offset < 0:
            return Path(self.path).read_bytes()
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            return f.read(self.size)

    @property
    def display_path(self) -> str:
        return self.path if self.offset < 0 else f"{self.path}::{self.id.split('::', 1)[1]}"


def _folder(root: Path) -> list[SourceItem]:
    files = with_utf8_names(sorted(p for p in root.rglob("*") if p.is_file()
                                   and not any(part.startswith(".") for part in p.relative_to(root).parts)))
    return [SourceItem(str(p.relative_to(root)), str(p.resolve())) for p in files]


def _path_list(list_file: Path) -> list[SourceItem]:
    base = list_file.parent
    if list_file.suffix.lower() in IMAGE_SUFFIXES:
        raise InvalidInputError(f"{list_file} is an image: give the folder it is in, or a text file listing image paths")
    try:
        text = list_file.read_text()
    except UnicodeDecodeError:
        raise InvalidInputError(f"{list_file} is not a text file of image paths (nor a folder or a .tar shard)") from None
    items, seen = [], set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = Path(line) if Path(line).is_absolute() else base / line
        if line in seen:
            continue
        seen.add(line)
        items.append(SourceItem(line, str(path.resolve())))
    return items


def _tars(tars: list[Path]) -> list[SourceItem]:
    items = []
    for tar_path in tars:
        with tarfile.open(tar_path) as tar:
            for member in tar:
                if member.isfile() and member.name.lower().endswith(IMAGE_SUFFIXES):
                    items.append(SourceItem(f"{tar_path.name}::{member.name}", str(tar_path.resolve()),
                                            member.offset_data, member.size))
    return items


def list_source(source: str | Path) -> list[SourceItem]:
    """Items of ``source`` in a stable order.

    A folder is walked recursively (every file is a candidate: unreadable ones are reported
    later, never silently dropped); a ``.txt`` file lists image paths, one per line, relative
    to the file; a ``.tar`` file, a folder of ``.tar`` shards or a brace-free glob of them is
    read as webdataset shards (image members only, by extension).
    """
    source = Path(source)
    if source.is_file() and source.suffix == ".tar":
        items = _tars([source])
    elif source.is_file():
        items = _path_list(source)
    elif source.is_dir():
        tars = sorted(source.glob("*.tar"))
        items = _tars(tars) if tars and not any(p.suffix.lower() in IMAGE_SUFFIXES for p in source.iterdir()) else _folder(source)
    elif any(ch in str(source) for ch in "*?["):
        tars = sorted(Path(source.anchor or ".").glob(str(source.relative_to(source.anchor or "."))))
        items = _tars([t for t in tars if t.suffix == ".tar"])
    else:
        raise InputNotFoundError(f"{source}: no such folder, path list or tar shard")
    if not items:
        raise EmptyInputError(f"{source}: no images found")
    return items
