"""``reco demo``: what runs on any machine, with the real DINOv2 ViT-S/14 weights available offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

DEMO_ENCODER = "dinov2-vits14"


def kmeans_foreground(features: torch.Tensor, image_size: tuple[int, int], iters: int = 50, seed: int = 0) -> np.ndarray:
    """Split (D, h, w) features into two clusters (cosine k-means) and return the cluster that
    covers fewer border pixels, upsampled bilinearly to ``image_size`` (W, H), as an (H, W) mask."""
    d, h, w = features.shape
    x = torch.nn.functional.normalize(features.reshape(d, -1).T.float(), dim=1)
    g = torch.Generator().manual_seed(seed)
    centers = x[torch.randperm(x.shape[0], generator=g)[:2]].clone()
    for _ in range(iters):
        assign = (x @ centers.T).argmax(1)
        for k in range(2):
            if (assign == k).any():
                centers[k] = torch.nn.functional.normalize(x[assign == k].mean(0), dim=0)
    sims = (x @ centers.T).T.reshape(2, 1, h, w)
    sims = torch.nn.functional.interpolate(sims, size=(image_size[1], image_size[0]), mode="bilinear", align_corners=False)
    labels = sims.argmax(0)[0].numpy()
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    foreground = int(np.bincount(border, minlength=2).argmin())
    return labels == foreground


def run_demo(out_dir: str | Path = "outputs/demo", device: str | None = None, samples: list[str] | None = None) -> list[Path]:
    """Dense-feature demo: PCA colouring of real photos and an unsupervised quokka mask.

    ``samples``: names from ``reco.samples`` (default: every one installed)."""
    from .device import pick_device
    from .imageio import load_image
    from .models import create_model
    from .samples import available_samples, quokka_mask, sample_path
    from .viz import feature_pca_image, overlay_mask, side_by_side

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    model = create_model(DEMO_ENCODER, device=dev)
    print(f"reco demo: encoder {DEMO_ENCODER} with weights from {model.weights.source.describe()} on {dev}")
    written = []
    for name in samples or available_samples():
        image = load_image(sample_path(name))
        with torch.no_grad():
            feats = model.dense_features(model.preprocess(image)[None].to(dev))[0].cpu()
        panel = [image, feature_pca_image(feats, image.size)]
        if name == "quokka":
            mask = kmeans_foreground(feats, image.size)
            truth = quokka_mask()
            iou = (mask & truth).sum() / (mask | truth).sum()
            print(f"  quokka: 2-means foreground vs the annotated polygon, IoU {iou:.3f}")
            panel.append(overlay_mask(image, mask))
        path = out / f"features_{name}.png"
        side_by_side(panel).save(path)
        written.append(path)
        print(f"  wrote {path}")
    return written
