"""Make docs/images/coseg_people_*.png: co-segmentation of the five real person photos that ship
inside PyPI packages, with real DINOv2 ViT-S/14 features, without and with pixel weights.

The pixel weights here are context elimination against a "background" reference built from the
quokka photo's inverted polygon mask (no CLIP weights are available offline, so no language
guidance). Run: .venv/bin/python scripts/coseg_people.py
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from reco.concepts import ConceptBankBuilder
from reco.models import create_model
from reco.core.samples import quokka_mask, sample_path
from reco.core.viz import concept_grid

PEOPLE = ("astronaut", "bus", "camera", "grace_hopper", "zidane")
OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def main() -> None:
    encoder = create_model("dinov2-vits14")
    builder = ConceptBankBuilder(encoder, context_elimination=True, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        people = tmp / "people" / "person"
        people.mkdir(parents=True)
        for name in PEOPLE:
            src = sample_path(name)
            shutil.copy(src, people / f"{name}{src.suffix}")
        background = tmp / "context" / "background"
        background.mkdir(parents=True)
        shutil.copy(sample_path("quokka"), background / "quokka.jpg")
        Image.fromarray((~quokka_mask()).astype(np.uint8) * 255).save(background / "quokka.mask.png")

        plain, _ = builder.build_from_exemplars(tmp / "people")
        context, _ = builder.build_from_exemplars(tmp / "context")
        weighted, _ = builder.build_from_exemplars(tmp / "people", context_bank=context)
        for tag, bank in (("plain", plain), ("context", weighted)):
            title = {"plain": "person, no pixel weights", "context": "person, context elimination vs. 'background'"}[tag]
            grid = concept_grid(bank, "person", encoder, title=f"{title}: heat = cosine to the reference, rings = seeds")
            grid.save(OUT / f"coseg_people_{tag}.png")
            seeds = bank["person"].seeds[:, 0].tolist()
            print(tag, dict(zip(sorted(p.name for p in people.iterdir()), seeds)))
        print("cosine(plain reference, weighted reference) =",
              float(plain["person"].reference @ weighted["person"].reference))


if __name__ == "__main__":
    main()
