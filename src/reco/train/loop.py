"""``reco train``: DeepLabv3+ on ReCo's pseudo-labels (and labelled photos' ground truth), resumable bit for bit.

Every random choice of iteration ``t`` is a function of (seed, t): the batch (a fixed
permutation per epoch), each sample's augmentation (its own generator) and the global RNG
(dropout), which is reseeded at every step. A run killed after a checkpoint and resumed with
``--resume`` therefore replays exactly the iterations it lost. Under ``torchrun`` each rank
takes its share of the batch (DistributedDataParallel); rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from ..core.errors import InputNotFoundError, InvalidInputError
from ..core.paths import exclusive
from ..core.device import pick_device
from ..core.geometry import centre_crop, centre_crop_label, resize_shorter_side
from ..core.imageio import load_image, read_label_map
from ..core.metrics import MeanIoU
from ..core.processes import bound_to_this_process
from ..data import open_dataset
from ..data.pseudo_labels import read_skipped
from ..models.reco_plus import build_reco_plus, read_checkpoint, save_checkpoint
from ..segment.reco_plus import ReCoPlusSegmenter
from ..segment.settings import SegmentSettings
from .augment import PairAugment


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (stable across runs and platforms)."""
    h = 1469598103934665603
    for v in values:
        h = ((h ^ (v & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) % (1 << 63)
    return h


def batch_keys(n_items: int, batch_size: int, seed: int, iteration: int) -> list[tuple[int, int]]:
    """(item index, sample key) pairs of ``iteration``: items in a per-epoch permutation."""
    orders: dict[int, list[int]] = {}  # a batch spans at most a few epochs
    out = []
    for k in range(batch_size):
        epoch, offset = divmod(iteration * batch_size + k, n_items)
        if epoch not in orders:
            orders[epoch] = torch.randperm(n_items, generator=torch.Generator().manual_seed(_mix(seed, epoch))).tolist()
        out.append((orders[epoch][offset], _mix(seed, iteration, k)))
    return out


class TrainItem(NamedTuple):
    """One training photo: its image and label map, and how the label is read and weighed."""

    image: Path
    label: Path
    confidence: Path | None = None  # a pseudo-label's confidence map (``reco pseudo-label --confidence``)
    ground_truth: object | None = None  # the SegmentationDataset whose labels these are; None: a pseudo-label
    weight: float = 1.0  # every pixel's loss weight


def read_training_label(item: TrainItem, min_confidence: float = 0.0) -> np.ndarray:
    """(H, W) class indices of ``item`` (255 = ignored): a ground truth through its dataset's
    table, a pseudo-label as written, less the pixels whose confidence is below ``min_confidence``."""
    if item.ground_truth is not None:
        return item.ground_truth.lut[item.ground_truth.read_values(item.label)]
    label = read_label_map(item.label)
    if min_confidence > 0:
        confidence = read_label_map(item.confidence)
        if confidence.shape != label.shape:
            raise InvalidInputError(f"{item.confidence}: confidence map is {confidence.shape[1]}x{confidence.shape[0]}, "
                                    f"its pseudo-label {label.shape[1]}x{label.shape[0]}")
        label = np.where(confidence < 255 * min_confidence, 255, label)
    return label


class TrainingSet(torch.utils.data.Dataset):
    """Items keyed by (index, sample key): the image, its label (a pseudo-label or a ground
    truth) and its loss weight, augmented with the key's generator. ``crop``: the image was
    resized and centre-cropped as the pseudo-labels were made (ground truths get the same crop);
    None: labels are at the image's own size and both are resized to shorter side ``resize``
    (the label by nearest neighbour)."""

    def __init__(self, items, resize: int, crop: int | None, augment, min_confidence: float = 0.0):
        self.items = [TrainItem(*item) for item in items]
        self.resize, self.crop, self.augment, self.min_confidence = resize, crop, augment, min_confidence

    def __len__(self):
        return len(self.items)

    def __getitem__(self, key):
        index, sample_key = key
        item = self.items[index]
        image = load_image(item.image, upright=False)  # pseudo-labels and labels are drawn on the stored pixels
        label = read_training_label(item, self.min_confidence)
        if self.crop is not None:
            if item.ground_truth is not None:  # at the image's own size: cropped as the image is
                label = centre_crop_label(torch.from_numpy(label), self.resize, self.crop).numpy()
            image = centre_crop(image, self.resize, self.crop)
        if label.shape != (image.height, image.width):
            after = "after resize/crop " if self.crop is not None else ""
            what = "label" if item.ground_truth is not None else "pseudo-label"
            raise InvalidInputError(f"{item.label}: {what} is {label.shape[1]}x{label.shape[0]}, "
                                    f"the image {after}is {image.width}x{image.height}")
        if self.crop is None:
            image = resize_shorter_side(image, self.resize, Image.BILINEAR)
            label = np.asarray(resize_shorter_side(Image.fromarray(label.astype(np.uint8), mode="L"), self.resize,
                                                   Image.NEAREST))
        x, y = self.augment(image, label, torch.Generator().manual_seed(sample_key))
        return x, y, torch.tensor(item.weight, dtype=torch.float32)


def training_items(config: dict) -> tuple[list[TrainItem], list[str]]:
    """The training photos and the class names: the training split's photos with their
    pseudo-labels (less the images ``reco pseudo-label`` could not read, and those of
    ``labelled_dataset``), then the ``labelled_dataset``'s photos with their ground truth."""
    dataset = open_dataset(config["train_dataset"])
    labels = Path(config["pseudo_labels"])
    unreadable = read_skipped(labels)
    truth = open_dataset(config["labelled_dataset"]) if config.get("labelled_dataset") else None
    labelled = {name for name, _, _ in truth.files} if truth else set()
    items = [TrainItem(image, labels / f"{name}.png", labels / "confidence" / f"{name}.png")
             for name, image, _ in dataset.files if name not in unreadable and name not in labelled]
    missing = [item.label for item in items if not item.label.is_file()]
    if missing:
        raise InputNotFoundError(f"{len(missing)} of {len(items)} pseudo-labels are missing (e.g. {missing[0]}): "
                                 "run `reco pseudo-label --config ...` first")
    if config["train"].get("min_confidence", 0) > 0:
        missing = [item.confidence for item in items if not item.confidence.is_file()]
        if missing:
            raise InputNotFoundError(f"train.min_confidence needs the teacher's confidence maps; {len(missing)} are "
                                     f"missing (e.g. {missing[0]}): run `reco pseudo-label --config ...` again")
    if truth is not None:
        if list(truth.class_names) != list(dataset.class_names):
            raise InvalidInputError(f"labelled_dataset has other classes ({', '.join(truth.class_names[:3])}, ...) "
                                    f"than train_dataset ({', '.join(dataset.class_names[:3])}, ...)")
        absent = [label for _, _, label in truth.files if not label.is_file()]
        if absent:
            raise InputNotFoundError(f"{len(absent)} labels of labelled_dataset are missing (e.g. {absent[0]})")
        weight = config["train"].get("labelled_weight", 1.0)
        items += [TrainItem(image, label, None, truth, weight) for _, image, label in truth.files]
    return items, list(dataset.class_names)


def check_label_values(paths: list[Path], num_classes: int) -> None:
    """Refuse, before training starts, a pseudo-label holding a value that is neither a class
    index below ``num_classes`` nor the ignore value 255 (it would fail mid-run, or train wrongly)."""
    for path in paths:
        values = np.unique(read_label_map(path))
        bad = values[(values >= num_classes) & (values != 255)]
        if bad.size:
            raise InvalidInputError(f"{path}: pseudo-label value {int(bad[0])} is not a class index (0..{num_classes - 1}) "
                                    "nor 255 (ignored)")


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Pixel cross-entropy averaged with each sample's weight over the pixels not ignored (255):
    with equal weights, the plain mean over those pixels."""
    loss = torch.nn.functional.cross_entropy(logits, target, ignore_index=255, reduction="none")
    w = weight.view(-1, 1, 1) * (target != 255)
    return (loss * w).sum() / w.sum().clamp_min(1e-12)


def initial_model(config: dict, num_classes: int, pretrained: bool = True):
    """The network before training: seeded random head (and encoder unless pretrained weights load)."""
    torch.manual_seed(_mix(config["train"]["seed"], 0xC0FFEE))
    m = config["model"]
    return build_reco_plus(m["arch"], num_classes, m["encoder_weights"] if pretrained else None)


def _distributed() -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def validate(model, config: dict, limit: int | None = None) -> float:
    """mIoU (%) of ``model`` on the validation split under the paper's protocol, segmented as the
    config's ``segment:`` says (DenseCRF by default, as the published code selects its best checkpoint)."""
    dataset = open_dataset(config["val_dataset"])
    t = config["train"]
    whole = t["crop"] is None  # whole frames at shorter side `resize`, scored at their own size
    settings = SegmentSettings(size=t["resize"] if whole else None, **config["segment"])
    segmenter = ReCoPlusSegmenter(model, dataset.class_names, settings=settings)
    metric = MeanIoU(dataset.num_classes)
    was_training = model.training
    model.eval()
    for i in range(len(dataset) if limit is None else min(limit, len(dataset))):
        item = dataset[i]
        image, label = item["image"], item["label"]
        if not whole:
            image, label = centre_crop(image, t["resize"], t["crop"]), centre_crop_label(label, t["resize"], t["crop"])
        metric.update(segmenter.predict_image(image).labels, label)
    model.train(was_training)
    return 100 * metric.compute()["miou"]


def train(config: dict, *, resume: bool = False, device: str | None = None, progress: bool = True) -> dict:
    """Train ReCo+ as ``config`` says; returns {"iteration", "best_miou", "last_loss"}."""
    if int(os.environ.get("RANK", "0")):  # under torchrun only rank 0 writes, and holds the folder's lock
        return _train(config, resume=resume, device=device, progress=progress)
    with exclusive(config["out"], what="training into"):
        return _train(config, resume=resume, device=device, progress=progress)


def _train(config: dict, *, resume: bool = False, device: str | None = None, progress: bool = True) -> dict:
    from tqdm.auto import tqdm

    t, m = config["train"], config["model"]
    rank, world = _distributed()
    dev = pick_device(device if world == 1 or not torch.cuda.is_available() else f"cuda:{int(os.environ['LOCAL_RANK'])}")
    out = Path(config["out"])  # created by the lock in train()
    items, class_names = training_items(config)
    val_names = list(open_dataset(config["val_dataset"]).class_names)  # fails now, not at the first validation
    if val_names != class_names:
        raise InvalidInputError(f"val_dataset has other classes ({len(val_names)}: {', '.join(val_names[:3])}, ...) than "
                         f"train_dataset ({len(class_names)}: {', '.join(class_names[:3])}, ...)")
    if t["batch_size"] % world:
        raise InvalidInputError(f"batch size {t['batch_size']} is not divisible by the {world} processes")
    check_label_values([item.label for item in items if item.ground_truth is None], len(class_names))
    last = out / "last.pt"
    if last.is_file() and not resume:
        raise InvalidInputError(f"{last} exists: pass --resume to continue it, or choose another --set out=DIR")
    model = initial_model(config, len(class_names), pretrained=not resume).to(dev)
    backbone = list(model.encoder.parameters())
    ids = {id(p) for p in backbone}
    head = [p for p in model.parameters() if id(p) not in ids]
    optimizer = torch.optim.Adam([{"params": backbone, "lr": t["lr_backbone"]}, {"params": head, "lr": t["lr_head"]}],
                                 weight_decay=t["weight_decay"])
    iterations = t["iterations"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: max(0.0, 1 - i / iterations) ** t["poly_power"])
    amp = bool(t["amp"]) and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    start, best = 0, -1.0
    if resume:
        if not last.is_file():
            raise InputNotFoundError(f"--resume: no checkpoint at {last}")
        state = read_checkpoint(last, "; delete it to start again, or restore it")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start, best = state["iteration"], state["best_miou"]
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    data = TrainingSet(items, t["resize"], t["crop"], PairAugment(crop=t["random_crop"], blur_p=t["blur_p"]),
                       t["min_confidence"])
    per_rank = t["batch_size"] // world
    keys = [batch_keys(len(items), t["batch_size"], t["seed"], it)[rank * per_rank:(rank + 1) * per_rank]
            for it in range(start, iterations)]
    loader = torch.utils.data.DataLoader(data, batch_sampler=keys, num_workers=t["num_workers"],
                                         worker_init_fn=bound_to_this_process() if t["num_workers"] else None)
    log = _Log(out, start) if rank == 0 else None
    meta = {"arch": m["arch"], "class_names": class_names, "config": config}
    loss_value = float("nan")
    net.train()
    for it, (x, y, weight) in zip(range(start, iterations),
                          tqdm(loader, total=iterations - start, initial=0, desc="train", disable=True if rank or not progress else None)):
        torch.manual_seed(_mix(t["seed"], it, 1 << 20))
        with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=amp):
            loss = weighted_cross_entropy(net(x.to(dev)), y.to(dev), weight.to(dev))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        loss_value = loss.item()
        step = it + 1
        if rank:
            continue
        miou = None
        if step % t["val_every"] == 0 or step == iterations:
            miou = validate(model, config, t["val_limit"])
            if miou > best:
                best = miou
                save_checkpoint(out / "best.pt", {"model": model.state_dict(), "reco_plus": meta, "iteration": step,
                                                  "miou": miou})
        log.write(step, loss_value, scheduler.get_last_lr()[1], miou)
        if step % t["checkpoint_every"] == 0 or step == iterations:
            save_checkpoint(last, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                   "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                                   "iteration": step, "best_miou": best, "reco_plus": meta})
    if log is not None:
        log.close()
    return {"iteration": iterations, "best_miou": best, "last_loss": loss_value}


class _Log:
    """log.csv (rows after ``start`` dropped on resume) and TensorBoard when it is installed."""

    def __init__(self, out: Path, start: int):
        self.path = out / "log.csv"
        rows = []
        if self.path.is_file() and start > 0:
            with self.path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["iteration"]) <= start]
        self.file = self.path.open("w", newline="")
        self.csv = csv.DictWriter(self.file, ["iteration", "loss", "lr_head", "val_miou"])
        self.csv.writeheader()
        self.csv.writerows(rows)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=start + 1)
        except ImportError:
            print("reco train: tensorboard is not installed (pip install 'reco[train]'): logging to log.csv only")
            self.tb = None

    def write(self, step: int, loss: float, lr: float, miou: float | None) -> None:
        self.csv.writerow({"iteration": step, "loss": f"{loss:.6f}", "lr_head": f"{lr:.3e}",
                           "val_miou": "" if miou is None else f"{miou:.3f}"})
        self.file.flush()
        if self.tb is not None:
            self.tb.add_scalar("train/loss", loss, step)
            if miou is not None:
                self.tb.add_scalar("val/miou", miou, step)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()

