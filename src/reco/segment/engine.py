"""Batched, prefetched inference over many image files.

DataLoader workers decode each file and apply the protocol (``prepare``: e.g. the paper's
resize + centre crop); the main process encodes batches of images that share a working size
(:meth:`reco.segment.segmenter.Segmenter.encode_batch`) and fuses them; DenseCRF runs in a pool of
worker processes while the next batch is encoded. Results come back in input order, so a
caller can write each output as it arrives and resume after an interruption.

Predictors other than ReCo's :class:`~reco.segment.segmenter.Segmenter` (ReCo+) still get decoding in
workers and, when they offer ``unfinished`` (the probabilities before the CRF), the CRF pool,
but their network is called image by image.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from ..core.errors import ConfigError, InvalidInputError, RecoError
from ..core.processes import bound_to_this_process, exit_with_parent
from .settings import SegmentSettings


def default_workers() -> int:
    """Decoding workers: one per spare CPU core, at most 4 (0: decode in the main process)."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def default_crf_workers() -> int:
    """DenseCRF processes: one per CPU core but one (left to the encoder), at least 1, at most 8."""
    return max(1, min(8, (os.cpu_count() or 1) - 1))


@dataclass
class Result:
    """One input: its key, the prediction (None if the file could not be used) and why not,
    and the (H, W, 3) uint8 image that was predicted (after ``prepare``)."""

    key: object
    prediction: object | None
    error: str | None = None
    image: np.ndarray | None = None


class _Frames(torch.utils.data.Dataset):
    """(key, path) items -> (key, prepared uint8 array or None, error or None)."""

    def __init__(self, items, prepare: Callable, upright: bool = True):
        self.items, self.prepare, self.upright = list(items), prepare, upright

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        # imported when needed: they load Pillow
        from ..core.geometry import MAX_ASPECT_RATIO
        from ..core.imageio import load_image

        key, path = self.items[i]
        try:
            image = load_image(path, max_aspect_ratio=MAX_ASPECT_RATIO, upright=self.upright)
            return key, np.asarray(self.prepare(image)), None
        except RecoError as e:
            return key, None, str(e)


def _bar_size() -> dict:
    """tqdm's bar size: its own, unless stderr is a terminal that reports no size (a bare pty),
    where tqdm would print nothing at all: then 80x24."""
    import os
    import sys

    try:
        blank = sys.stderr.isatty() and os.get_terminal_size(sys.stderr.fileno()).columns == 0
    except (OSError, ValueError, AttributeError):
        blank = False
    return {"ncols": 80, "nrows": 24} if blank else {}


def _as_list(batch):
    return batch


def _unchanged(image):
    return image


def _crf_finish(probabilities: np.ndarray, image: np.ndarray, original_size, names, keep, variant: str):
    """:func:`reco.segment.prediction.finish` with the CRF, in a pool process (numpy in and out)."""
    # imported when needed: they load Pillow
    import torch as _torch

    from .prediction import finish

    pred = finish(_torch.from_numpy(probabilities), image, original_size, names, crf=True, crf_variant=variant,
                  keep=keep)
    return pred.labels.numpy(), pred.held_probabilities.numpy()  # at the working size: upsampled when read


def _submit_crf(pool, u, variant: str):
    """The CRF of an :class:`~reco.segment.prediction.Unfinished` prediction ``u``, in ``pool``."""
    return pool.submit(_crf_finish, u.probabilities.numpy(), u.image, u.original_size, u.concepts, u.keep, variant)


def _embeddings(segmenter, arrays) -> list:
    """:meth:`~reco.segment.segmenter.Segmenter.encode_batch` of ``arrays``; if one of them cannot be
    encoded, each is encoded alone and the failures become their error messages."""
    try:
        return segmenter.encode_batch(arrays)
    except InvalidInputError:
        out = []
        for array in arrays:
            try:
                out.append(segmenter.encode(array))
            except InvalidInputError as e:
                out.append(str(e))
        return out


def _init_crf_worker(parent: int) -> None:
    import signal

    exit_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent answers it alone
    torch.set_num_threads(1)


def predict_files(predictor, items, *, prepare: Callable = _unchanged, concepts: list[str] | None = None,
                  batch_size: int = 8, workers: int | None = None, crf_workers: int | None = None,
                  progress: bool | None = True, desc: str = "segmenting", upright: bool = True) -> Iterator[Result]:
    """Predict every ``(key, path)`` of ``items`` in order; yields a :class:`Result` per item.

    ``prepare``: a picklable function applied to each decoded PIL image in the workers;
    ``upright``: apply EXIF orientation (photos; False for dataset images, whose labels are drawn
    on the stored pixels);
    ``progress``: a bar (True or None: when on a terminal; False: never);
    ``batch_size``: images encoded together; ``workers``: decoding processes (default
    :func:`default_workers`); ``crf_workers``: DenseCRF processes when the predictor's CRF is on
    (default :func:`default_crf_workers`; 0 runs it in this process). With the pool on a CPU
    encoder, the encoder's torch threads are cut to the cores the pool leaves free, and restored.
    """
    # imported when needed: they load Pillow
    from tqdm.auto import tqdm

    from .prediction import Prediction, Unfinished, select_concepts
    from .segmenter import Segmenter

    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    items = list(items)
    several = len(items) > 1  # worker processes only pay for their start-up from two images on
    workers = (default_workers() if workers is None else workers) if several else 0
    batched = isinstance(predictor, Segmenter)
    settings = getattr(predictor, "settings", None) or SegmentSettings()  # a user's own Predictor: the defaults
    crf_in_pool = ((batched or hasattr(predictor, "unfinished")) and settings.crf and several
                   and (default_crf_workers() if crf_workers is None else crf_workers) > 0)
    variant = settings.crf_variant
    loader = torch.utils.data.DataLoader(_Frames(items, prepare, upright), batch_size=batch_size, num_workers=workers,
                                         collate_fn=_as_list, prefetch_factor=2 if workers else None,
                                         worker_init_fn=bound_to_this_process() if workers else None)
    bar = tqdm(total=len(loader.dataset), desc=desc, unit="img", disable=True if progress is False else None,
               **_bar_size())
    pool, threads = None, torch.get_num_threads()
    if crf_in_pool:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        crf_workers = crf_workers or default_crf_workers()
        pool = ProcessPoolExecutor(crf_workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_crf_worker, initargs=(os.getpid(),))
        network = predictor.encoder if batched else predictor.model
        if next(network.parameters()).device.type == "cpu":  # the CRF processes take their cores from the network's
            torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 1) - crf_workers)))
    pending: deque = deque()  # Results, or (key, future, names, image) waiting for the CRF, in input order
    limit = 2 * batch_size + 2 * (crf_workers if pool else 0)

    def drain(all_of_them: bool):
        while pending and (all_of_them or len(pending) > limit or not isinstance(pending[0], tuple)
                           or pending[0][1].done()):
            item = pending.popleft()
            if isinstance(item, tuple):
                key, future, names, image = item
                labels, probs = future.result()
                item = Result(key, Prediction(torch.from_numpy(labels), torch.from_numpy(probs), names), image=image)
            bar.update(1)
            yield item

    try:
        for batch in loader:
            ok = [(key, array) for key, array, error in batch if error is None]
            results = {key: Result(key, None, error) for key, _, error in batch if error is not None}
            if batched and ok:
                names = select_concepts(concepts, predictor.concepts)
                for (key, array), emb in zip(ok, _embeddings(predictor, [array for _, array in ok])):
                    if isinstance(emb, str):
                        results[key] = Result(key, None, emb)
                    elif pool is None:
                        results[key] = Result(key, predictor.predict_embedding(emb, names), image=array)
                    else:
                        unfinished = Unfinished(predictor.probabilities(emb, names), emb.image, emb.original_size,
                                                names)
                        results[key] = (key, _submit_crf(pool, unfinished, variant), names, array)
            else:
                for key, array in ok:
                    try:
                        if pool is None:
                            results[key] = Result(key, predictor.predict_image(array, concepts), image=array)
                        else:
                            unfinished = predictor.unfinished(array, concepts)
                            results[key] = (key, _submit_crf(pool, unfinished, variant), unfinished.concepts, array)
                    except InvalidInputError as e:  # e.g. over the working-pixel budget
                        results[key] = Result(key, None, str(e))
            for key, _, _ in batch:
                pending.append(results[key])
            yield from drain(all_of_them=False)
        yield from drain(all_of_them=True)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
            torch.set_num_threads(threads)
