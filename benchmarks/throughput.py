"""Training throughput on this machine: a plain supervised step, each pretext's step, and the exemplar batch.

    python -m benchmarks.throughput [--steps 40] [--batch-size 128] [--channels 3 --size 32 --steps-only]

Every number comes from the code the pipeline runs (the registry's objectives through `fit`), on random
1×28×28 images (the cost does not depend on their content; --channels and --size give another shape, e.g.
DeepFashion's 3×32×32). Printed: images per second of each step, its
cost per image relative to a plain step, the exemplar batch made on the device versus the seed's way
(per-image torchvision transforms in a DataLoader), and the options weighed for speed (precision, LRN,
torch.compile). Every step runs under the pipeline's own settings (compute's defaults: the
precision `auto` picks, and on a GPU the deterministic kernels every stage sets), and on a GPU the plain step is
also timed with `compute.deterministic: false`, what bitwise-repeatable runs cost. Not a test: it takes a few
minutes and its numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time

import torch
import torch.nn.functional as F
from torch import nn

from selfsup import pretexts
from selfsup.cli import run_stage
from selfsup.evaluate import top1_accuracy
from selfsup.finetune import objective as finetune_objective
from selfsup.models import CifarNet, Classifier
from selfsup.params import ComputeParams, FinetuneParams, OptimParams
from selfsup.pretexts.exemplar import ExemplarParams
from selfsup.pretrain import pretext_objective
from selfsup.progress import Progress
from selfsup.runtime import Compute, Normalize, Runtime, set_determinism
from selfsup.train import Objective, Plan, fit

CHANNELS, SIZE, CLASSES = 1, 28, 10  # main() sets the shape from the command line


def images_per_second(objective: Objective, n_images: int, batch_size: int, compute: Compute, views: int = 1,
                      repeats: int = 3) -> float:
    """Network-input images per second of `fit` on n_images source images: the best of `repeats` timed
    epochs after a warm-up."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_images, CHANNELS, SIZE, SIZE), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, CLASSES, (n_images,), generator=gen)
    runtime = Runtime(compute, Normalize([0.286] * CHANNELS, [0.353] * CHANNELS, compute.device))
    plan = Plan(OptimParams(batch_size=batch_size, lr=0.01), 1)
    fit(objective, images[: 2 * batch_size], labels[: 2 * batch_size], plan, runtime, progress=Progress("warm-up"))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fit(objective, images, labels, plan, runtime, progress=Progress("timed"))
        if compute.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return n_images * views / best


def supervised(norm: str = "batch", augment: bool = False) -> Objective:
    """A plain step, or (augment) fine-tuning's step as the finetune stage builds it."""
    model = Classifier(CifarNet(CHANNELS, SIZE, norm=norm), CLASSES)
    if augment:
        return finetune_objective(model, FinetuneParams(), pretrained=False)
    return Objective(model, lambda x, y, gen: (x, y), F.cross_entropy, accuracy=top1_accuracy)


# the papers' views per image, as docs/speed.md measured them (params.yaml's defaults feed fewer)
PAPER_VIEWS = {"rotation": 4, "exemplar": 6}


def pretext(name: str, batch_size: int) -> tuple[Objective, int, int]:
    """The pretext's objective as the pretrain stage builds it (with the papers' views), its views per image and
    source batch."""
    spec = pretexts.get_pretext(name)
    cfg = spec.params()
    if name in PAPER_VIEWS:
        cfg = dataclasses.replace(cfg, views=PAPER_VIEWS[name])
    objective = pretext_objective(spec, cfg, CifarNet(CHANNELS, SIZE), CHANNELS, SIZE)
    return objective, spec.views(cfg), spec.source_batch_size(cfg, batch_size)


def seed_exemplar_loader(images: torch.Tensor, cfg: ExemplarParams, batch_size: int):
    """The seed's way: PIL images, per-image torchvision transforms, `views` of each, in a DataLoader."""
    from torchvision import transforms as T
    from torchvision.transforms.functional import to_pil_image

    transform = T.Compose([
        T.RandomAffine(cfg.rotate, translate=(cfg.translate, cfg.translate), scale=(cfg.scale_min, cfg.scale_max)),
        T.RandomHorizontalFlip(), T.ColorJitter(cfg.brightness, cfg.contrast), T.ToTensor(),
    ])

    class Views(torch.utils.data.Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            pil = to_pil_image(images[i])
            return torch.stack([transform(pil) for _ in range(cfg.views)]), i

    return torch.utils.data.DataLoader(Views(), batch_size=batch_size, shuffle=True, num_workers=os.cpu_count() or 1)


def exemplar_batches_per_second(batch_size: int, batches: int, device: torch.device) -> tuple[float, float]:
    cfg = ExemplarParams(views=PAPER_VIEWS["exemplar"])
    images = torch.randint(0, 256, (batch_size * batches, 1, SIZE, SIZE), dtype=torch.uint8)
    make = pretexts.get_pretext("exemplar").make_batch(cfg)
    gen = torch.Generator(device=device).manual_seed(0)
    on_device = images.to(device)
    ids = torch.arange(len(images), device=device)
    start = time.perf_counter()
    for b in range(batches):
        make(on_device[b * batch_size : (b + 1) * batch_size].float() / 255, ids[b * batch_size : (b + 1) * batch_size], gen)
    if device.type == "cuda":
        torch.cuda.synchronize()  # the batches were only queued
    ours = batches / (time.perf_counter() - start)
    loader = seed_exemplar_loader(images.squeeze(1), cfg, batch_size)
    start = time.perf_counter()
    for _ in loader:
        pass
    theirs = batches / (time.perf_counter() - start)
    return ours, theirs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--steps", type=int, help="timed steps per measurement (default: 40 on a CPU, 400 on a GPU, "
                                                  "where 40 steps take less time than the timer's noise)")
    parser.add_argument("--batch-size", type=int, default=128, help="source images per step")
    parser.add_argument("--channels", type=int, default=1, help="image channels (DeepFashion: 3)")
    parser.add_argument("--size", type=int, default=28, help="image side in pixels (DeepFashion: data.deepfashion.image_size)")
    parser.add_argument("--steps-only", action="store_true", help="only the training steps, not the batch and options")
    args = parser.parse_args(argv)
    global CHANNELS, SIZE
    CHANNELS, SIZE = args.channels, args.size
    torch.manual_seed(0)
    settings = ComputeParams()  # the pipeline's defaults: what `dvc repro` runs
    auto = Compute.resolve(settings)
    set_determinism(auto.device, settings.deterministic)  # as every stage does (on a GPU: deterministic kernels)
    fp32 = Compute(auto.device)
    args.steps = args.steps or (400 if auto.device.type == "cuda" else 40)
    n = args.steps * args.batch_size
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; device {auto.describe()} (compute: auto); batch {args.batch_size}, {args.steps} steps; "
          f"images {CHANNELS}x{SIZE}x{SIZE}")

    plain = images_per_second(supervised(), n, args.batch_size, auto)
    print("\nstep (the papers' views)              images/s   cost per image vs plain")
    print(f"  plain supervised step              {plain:8.0f}   1.00")
    finetune = images_per_second(supervised(augment=True), n, args.batch_size, auto)
    print(f"  finetune step (flip + translate)   {finetune:8.0f}   {plain / finetune:.2f}")
    for name in pretexts.names():
        if pretexts.get_pretext(name).trains:
            objective, views, source = pretext(name, args.batch_size)
            rate = images_per_second(objective, source * args.steps, source, auto, views)
            label = f"pretext {name} ({source} images x {views})"
            print(f"  {label:<34} {rate:8.0f}   {plain / rate:.2f}")

    if args.steps_only:
        return
    print(f"\nexemplar batch ({PAPER_VIEWS['exemplar']} views of {args.batch_size} images)  batches/s")
    ours, theirs = exemplar_batches_per_second(args.batch_size, args.steps, auto.device)
    print(f"  batched on the device (ours)       {ours:8.1f}")
    print(f"  per-image PIL transforms (seed)    {theirs:8.1f}")
    print(f"  speed-up                           {ours / theirs:8.1f}x")

    print("\noptions (plain supervised step)       images/s")
    print(f"  {auto.describe():<34} {plain:8.0f}   (the pipeline's choice)")
    if auto.device.type == "cuda":  # the price of bitwise-repeatable runs: cuDNN's autotuned kernels instead
        set_determinism(auto.device, False)
        rate = images_per_second(supervised(), n, args.batch_size, auto)
        set_determinism(auto.device, settings.deterministic)
        print(f"  {'compute.deterministic: false':<34} {rate:8.0f}")
    if fp32 != auto:
        print(f"  {fp32.describe():<34} {images_per_second(supervised(), n, args.batch_size, fp32):8.0f}")
    print(f"  {'norm lrn, FastLRN':<34} {images_per_second(supervised('lrn'), n, args.batch_size, auto):8.0f}")
    objective = supervised("lrn")
    objective.model.backbone.conv[3] = nn.LocalResponseNorm(9, 0.001, 0.75, 1.0)
    print(f"  {'norm lrn, nn.LocalResponseNorm':<34} {images_per_second(objective, n, args.batch_size, auto):8.0f}")
    objective = supervised()
    objective.model = torch.compile(objective.model)
    start = time.perf_counter()
    rate = images_per_second(objective, n, args.batch_size, auto)
    print(f"  {'torch.compile (after compiling)':<34} {rate:8.0f}   compile + run {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    run_stage(main)
