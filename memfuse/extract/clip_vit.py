"""CLIP ViT image encoder (ViT-B/16 by default) in plain torch, no torchvision/open_clip.

The module layout and parameter names follow OpenAI CLIP's ``VisionTransformer``, so an
OpenAI state dict (``visual.conv1.weight``, ``visual.class_embedding``,
``visual.positional_embedding``, ``visual.ln_pre``, ``visual.transformer.resblocks.N.{ln_1,
attn.in_proj_weight, attn.in_proj_bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}``,
``visual.ln_post``, ``visual.proj``) loads directly. open_clip's ViT-B-16 uses the same
names. The architecture (width, layers, patch size, input size, output width) is read from
the state dict's shapes.

Activation: OpenAI's weights were trained with QuickGELU (``x * sigmoid(1.702 x)``);
open_clip's own (e.g. LAION) ViT-B-16 weights use exact GELU. ``quick_gelu`` picks.

Output of :meth:`ClipVisionEncoder.forward`: ``ln_post(cls token) @ proj``, the raw image
embedding that ``CLIP.encode_image`` returns and AI-VAD stores (no L2 normalisation).

Preprocessing (:func:`preprocess_crops`): AI-VAD crops each box as
``[ceil(y1):ceil(y2), ceil(x1):ceil(x2)]``, resizes it to 224x224 with ``cv2.resize``'s
default bilinear interpolation (no aspect-preserving centre crop, unlike CLIP's own
transform), scales to [0, 1] and normalises with CLIP's mean and std. AI-VAD's frames come
from ``cv2.imread`` and are therefore BGR, fed unchanged to a model trained on RGB; on a
grey dataset (Ped2) the channels are equal and this does not matter. Here the default is
RGB, ``bgr=True`` reproduces AI-VAD on colour datasets.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from ..io import InputError
from .frames import crop

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
INTERPOLATIONS = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA}


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 (as OpenAI CLIP), returned in the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, quick_gelu: bool = True):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, width * 4)),
                    ("gelu", QuickGELU() if quick_gelu else nn.GELU()),
                    ("c_proj", nn.Linear(width * 4, width)),
                ]
            )
        )
        self.ln_2 = LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, quick_gelu: bool = True):
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, quick_gelu) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class ClipVisionEncoder(nn.Module):
    """CLIP's ``VisionTransformer``.

    Args:
        input_resolution: image side (224); patch_size: 16; width: 768; layers: 12;
        heads: width // 64; output_dim: 512; quick_gelu: see module docstring.

    forward: (N, 3, R, R) float normalised images -> (N, output_dim) embeddings.
    """

    def __init__(
        self,
        input_resolution: int = 224,
        patch_size: int = 16,
        width: int = 768,
        layers: int = 12,
        heads: int | None = None,
        output_dim: int = 512,
        quick_gelu: bool = True,
    ):
        super().__init__()
        self.input_resolution = input_resolution
        self.output_dim = output_dim
        heads = heads or width // 64
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, quick_gelu)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x.to(self.conv1.weight.dtype))  # (N, width, g, g)
        x = x.flatten(2).transpose(1, 2)  # (N, g*g, width)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj

    @staticmethod
    def config_from_state_dict(sd: dict[str, torch.Tensor]) -> dict:
        """Architecture of a ``visual.*``-stripped state dict, from its tensor shapes."""
        width, _, patch, _ = sd["conv1.weight"].shape
        n_tokens = sd["positional_embedding"].shape[0]
        grid = int(round(math.sqrt(n_tokens - 1)))
        if grid * grid + 1 != n_tokens:
            raise InputError(f"positional_embedding has {n_tokens} tokens, not a square grid + 1")
        layers = len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")})
        return {
            "input_resolution": grid * patch,
            "patch_size": patch,
            "width": width,
            "layers": layers,
            "heads": width // 64,
            "output_dim": sd["proj"].shape[1],
        }


def visual_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep the image tower of a full CLIP state dict, keys without ``visual.``.

    Accepts OpenAI / open_clip layouts, an optional ``state_dict`` wrapper and a
    ``module.`` (DataParallel) prefix.
    """
    if "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    sd = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in sd.items()}
    vis = {k[len("visual.") :]: v for k, v in sd.items() if k.startswith("visual.")}
    if not vis and "conv1.weight" in sd:
        vis = dict(sd)  # already the visual tower
    if "conv1.weight" not in vis or "proj" not in vis:
        sample = ", ".join(list(sd)[:5])
        raise InputError(f"not a CLIP ViT state dict (no visual.conv1.weight / visual.proj); first keys: {sample}")
    return {k: v for k, v in vis.items() if torch.is_tensor(v)}


def read_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """Read CLIP weights: an OpenAI TorchScript ``.pt`` (``torch.jit.load(...).state_dict()``),
    a plain ``torch.save``'d state dict (OpenAI or open_clip), or ``.safetensors``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"CLIP weights file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise InputError(f"{path}: reading .safetensors needs the `safetensors` package") from exc
        return load_file(str(path))
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit deprecation notice
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    except Exception:
        pass
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise InputError(f"cannot read CLIP weights {path}: {exc}") from exc
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a state dict or TorchScript model, got {type(obj).__name__}")
    return obj


def load_clip_vision(path_or_sd: Path | str | dict, quick_gelu: bool = True) -> ClipVisionEncoder:
    """Build a :class:`ClipVisionEncoder` from weights (file or state dict), float32, eval."""
    sd = path_or_sd if isinstance(path_or_sd, dict) else read_state_dict(path_or_sd)
    vis = visual_state_dict(sd)
    model = ClipVisionEncoder(**ClipVisionEncoder.config_from_state_dict(vis), quick_gelu=quick_gelu)
    vis = {k: v.float() for k, v in vis.items()}
    missing, unexpected = model.load_state_dict(vis, strict=False)
    if missing:
        raise InputError(f"CLIP weights lack {len(missing)} image-tower tensors, e.g. {missing[:3]}")
    unexpected = [k for k in unexpected if not k.startswith(("attnpool", "ls_"))]
    if unexpected:
        raise InputError(f"CLIP weights hold {len(unexpected)} unknown image-tower tensors, e.g. {unexpected[:3]}")
    return model.eval()


def preprocess_crops(
    frame: np.ndarray, boxes: np.ndarray, size: int = 224, interpolation: str = "bilinear", bgr: bool = False
) -> torch.Tensor:
    """Box crops of one frame as CLIP input.

    Args:
        frame: (H, W, 3) uint8 RGB or (H, W) uint8 grey (replicated to 3 channels).
        boxes: (n, 4) checked boxes.
        size: model input side; interpolation: ``bilinear`` (AI-VAD), ``bicubic`` or ``area``.
        bgr: feed channels in BGR order (AI-VAD's cv2.imread quirk).

    Returns:
        (n, 3, size, size) float32, CLIP-normalised.
    """
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    if bgr:
        frame = frame[:, :, ::-1]
    interp = INTERPOLATIONS[interpolation]
    crops = np.stack(
        [cv2.resize(np.ascontiguousarray(crop(frame, b)), (size, size), interpolation=interp) for b in boxes]
    )
    x = crops.astype(np.float32) / 255.0
    x = (x - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


@torch.no_grad()
def encode(model: ClipVisionEncoder, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """(N, 3, R, R) preprocessed images -> (N, output_dim) float32 raw embeddings, on the
    model's device."""
    device = next(model.parameters()).device
    outs = [model(images[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(outs).numpy() if outs else np.zeros((0, model.output_dim), np.float32)
