#!/usr/bin/env python3
"""PyTorch twin of nightshift's ResNet-18 throughput check: torchvision resnet18 (10 classes), bundled
Fashion-MNIST upsampled to 64x64 RGB, batch 64, AdamW, on CUDA when available. Like `nightshift trial`, a
stratified 20 % is held out and evaluated after each epoch (eval mode, no_grad, batch 64). Prints training
and eval images/s (means over the epochs after the first). Skips when torch/torchvision are missing.

    python3 benches/pytorch_resnet18.py --epochs 2 [--device cpu --threads 2] [--batch-size 256] [--data data/mnist_npm10k]
"""
import argparse, sys
from pathlib import Path

try:
    import torch
    import torch.nn.functional as F
    import torchvision
except ImportError:
    print("SKIPPED: torch/torchvision not installed")
    sys.exit(0)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pytorch_small_cnn  # noqa: E402  same IDX reader and data
from pytorch_small_cnn import load, stratified_split, timed_epochs  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--data", help="an IDX directory (default: the bundled Fashion-MNIST, 100 per class)")
    a = p.parse_args()
    if a.data:
        pytorch_small_cnn.DATA = Path(a.data)
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    x, y = load("train")
    x, y, vx, vy = stratified_split(x, y, 0.2)
    # gray -> RGB, 28 -> 64 bilinear, ImageNet normalisation (x was normalised to [-1, 1]; undo first)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def prepare(images):
        images = F.interpolate(images.mul(0.5).add(0.5).repeat(1, 3, 1, 1), size=64, mode="bilinear", align_corners=False)
        return ((images - mean) / std).to(dev)

    x, vx = prepare(x), prepare(vx)
    y, vy = y.to(dev), vy.to(dev)
    model = torchvision.models.resnet18(num_classes=10).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, eps=1e-8, weight_decay=0.0)
    rates, eval_rates, _ = timed_epochs(model, opt, x, y, vx, vy, a.epochs + 1, a.batch_size, dev)
    timed, timed_eval = rates[1:], eval_rates[1:]
    print(f"pytorch {torch.__version__} resnet18 64x64 batch {a.batch_size} on {dev}: "
          f"{sum(timed) / len(timed):.0f} images/s; eval {sum(timed_eval) / len(timed_eval):.0f} images/s")


if __name__ == "__main__":
    main()
