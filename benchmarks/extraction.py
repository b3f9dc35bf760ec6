"""Feature extraction throughput against the bare backbone forward pass on the same inputs.

The backbone is ``timm.create_model(--model, pretrained=False, num_classes=0)`` (random weights: throughput
does not depend on them) on ``--images`` random 224 px images. Two sides, alternated ``--repeats`` times:

* ``bare forward``: ``model(x)`` over pre-normalised float batches under ``torch.inference_mode`` — the
  floor, nothing but the network;
* the extractor: ``--extractor loop`` (default) is a plain batched extraction loop as featbench does it:
  uint8 images -> float, normalise, channels_last, ``inference_mode`` forward, L2-normalise, store fp16;
  ``--extractor featbench`` runs featbench's own extractor (core/extract.py: PIL images, per-image
  transform, DataLoader).

    python benchmarks/extraction.py [--model resnet18] [--images 256] [--batch 64]
"""

from __future__ import annotations

import argparse

from _common import alternate, header, set_threads

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def loop_extractor(model, images, batch: int, device):
    """A plain batched extraction loop: what featbench's extractor does, without data-set plumbing."""
    import torch

    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255
    out = torch.empty(len(images), model.num_features, dtype=torch.float16)
    with torch.inference_mode():
        for s in range(0, len(images), batch):
            x = images[s:s + batch].to(device, non_blocking=True).float().sub_(mean).div_(std)
            f = model(x.contiguous(memory_format=torch.channels_last))
            out[s:s + batch] = torch.nn.functional.normalize(f.float(), dim=1).half().cpu()
    return out


# ------------------------------------------------------------------------------------------------------
# The switch to featbench's extractor (``--extractor featbench``): core/extract.py's ``iter_features`` over
# an in-memory ``ImageSource`` (PIL images, per-image transform, DataLoader), as `featbench extract` runs
# it. The three lines marked API are what it depends on; adjust them if that API changes.
def featbench_extractor(model, images, batch: int, device):
    import numpy as np
    import torch

    try:
        from featbench.inputs.datasets import ImageSource  # API: featbench.inputs.extract / featbench.inputs.datasets
        from featbench.inputs.extract import (  # API: featbench.inputs.extract / featbench.inputs.datasets
            ExtractSettings,
            iter_features,
        )
    except ImportError as exc:
        raise SystemExit(
            f"--extractor featbench needs featbench.inputs.extract and featbench.inputs.datasets: {exc}"
        ) from None
    from PIL import Image

    class ArrayImages(ImageSource):
        labels = np.zeros(len(images), dtype=np.int64)

        def image(self, i):
            return Image.fromarray(images[i].permute(1, 2, 0).numpy())

    def transform(img):
        x = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1) / 255
        return (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)

    settings = ExtractSettings(
        batch_size=batch, device=str(device), progress=False
    )  # API: featbench.inputs.extract / featbench.inputs.datasets
    return np.concatenate(list(iter_features(model, ArrayImages(), transform, settings)))


# ------------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--extractor", choices=("loop", "featbench"), default="loop")
    args = ap.parse_args()
    set_threads(args.threads)

    import timm
    import torch

    header(
        f"extraction throughput: {args.extractor} extractor vs the bare forward ({args.model}, 224 px, "
        f"{args.images} random images, batch {args.batch})"
    )
    device = torch.device(args.device)
    model = timm.create_model(args.model, pretrained=False, num_classes=0).eval().to(device)
    model = model.to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, 224, 224), dtype=torch.uint8, generator=g)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD).view(1, 3, 1, 1) * 255
    ready = [
        ((images[s : s + args.batch].float() - mean) / std).to(device).contiguous(memory_format=torch.channels_last)
        for s in range(0, args.images, args.batch)
    ]

    def bare():
        with torch.inference_mode():
            for x in ready:
                model(x)

    extractor = loop_extractor if args.extractor == "loop" else featbench_extractor
    times = alternate(
        {"bare forward": bare, "extractor": lambda: extractor(model, images, args.batch, device)},
        args.repeats,
        {"warm-up": bare},
    )
    base = times["bare forward"]
    for name, t in times.items():
        print(
            f"{name:13s} {t.wall:7.2f} s  {args.images / t.wall:8.1f} images/s  ({base.wall / t.wall * 100:5.1f} % "
            "of the bare forward's throughput)"
        )


if __name__ == "__main__":
    main()
