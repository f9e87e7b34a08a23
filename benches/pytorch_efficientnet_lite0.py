#!/usr/bin/env python3
"""PyTorch twin of nightshift's EfficientNet-Lite0 (`crates/trainer/src/efficientnet.rs`) for the CPU
throughput table: the same architecture and parameter names (those of `efficientnet_lite_pytorch`,
lukemelas-style), TF "same" padding fixed from the input size, BatchNorm eps 1e-3 / momentum 0.01, ReLU6,
no squeeze-and-excitation and no drop-connect (neither model has them). Written for this benchmark.

Before timing, it loads the real ImageNet weights at 224x224 and checks its logits on the two reference
photos of `../shared/fixtures/efficientnet_lite0_reference.json` (skipped with a message when the fixture is
not there). Then: the weights with a fresh 10-class head, bundled Fashion-MNIST (grey -> 3 channels, resized
bilinearly to --image-size, ImageNet normalisation), a stratified 20 % held out for validation as
`nightshift trial` does, AdamW, batch 64; each epoch trains on the rest (timed) and evaluates the held-out
images (eval mode, no_grad, batch 64; timed). Prints the mean training and eval images/s over the epochs
after the first.

    python3 benches/pytorch_efficientnet_lite0.py --weights models/efficientnet-lite0.pth --image-size 96 \
        --epochs 1 --threads 2 [--freeze-depth 7]
"""
import argparse, json, sys
from pathlib import Path

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("SKIPPED: torch is not installed (pip install torch)")
    sys.exit(0)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pytorch_small_cnn import load, stratified_split, timed_epochs  # noqa: E402  same data, split and loop

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "fixtures" / "efficientnet_lite0_reference.json"
# (repeats, kernel, stride, expansion, channels out) of the seven block groups, as in efficientnet.rs.
GROUPS = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]


class SameConv(nn.Conv2d):
    """A bias-free convolution with TF "same" padding for an input of `size`: symmetric padding inside the
    convolution when it is symmetric, else an explicit pad first (stride 2 on even sizes)."""

    def __init__(self, cin, cout, kernel, stride, groups, size):
        pads = []
        for n in size:
            out = -(-n // stride)
            total = max((out - 1) * stride + kernel - n, 0)
            pads.append((total // 2, total - total // 2))
        symmetric = all(a == b for a, b in pads)
        super().__init__(cin, cout, kernel, stride, padding=pads[0][0] if symmetric else 0, groups=groups, bias=False)
        (top, bottom), (left, right) = pads
        self.pad = None if symmetric else (left, right, top, bottom)
        self.out_size = [-(-n // stride) for n in size]

    def forward(self, x):
        return super().forward(x if self.pad is None else F.pad(x, self.pad))


def bn(channels):
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MbConv(nn.Module):
    def __init__(self, cin, cout, kernel, stride, expansion, size):
        super().__init__()
        hidden = cin * expansion
        if expansion != 1:
            self._expand_conv = SameConv(cin, hidden, 1, 1, 1, size)
            self._bn0 = bn(hidden)
        self.expand = expansion != 1
        self._depthwise_conv = SameConv(hidden, hidden, kernel, stride, hidden, size)
        self.out_size = self._depthwise_conv.out_size
        self._bn1 = bn(hidden)
        self._project_conv = SameConv(hidden, cout, 1, 1, 1, self.out_size)
        self._bn2 = bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, inputs):
        x = F.relu6(self._bn0(self._expand_conv(inputs))) if self.expand else inputs
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.residual else x


class EfficientNetLite0(nn.Module):
    def __init__(self, classes=1000, image_size=224, dropout=0.0):
        super().__init__()
        size = [image_size, image_size]
        self._conv_stem = SameConv(3, 32, 3, 2, 1, size)
        size = self._conv_stem.out_size
        self._bn0 = bn(32)
        blocks, cin, self.block_group = [], 32, []
        for group, (repeats, kernel, stride, expansion, cout) in enumerate(GROUPS):
            for r in range(repeats):
                blocks.append(MbConv(cin, cout, kernel, stride if r == 0 else 1, expansion, size))
                self.block_group.append(group)
                size, cin = blocks[-1].out_size, cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(320, 1280, 1, 1, 1, size)
        self._bn1 = bn(1280)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, classes)

    def forward(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))
        return self._fc(self._dropout(x))

    def freeze(self, depth):
        """nightshift's `freeze_depth: depth`: the stem and block groups 1..depth frozen (no gradient, BatchNorm
        in eval mode); group 7 includes _conv_head/_bn1, so depth 7 leaves only _fc: a linear probe."""
        frozen = [self._conv_stem, self._bn0] if depth > 0 else []
        frozen += [b for b, g in zip(self._blocks, self.block_group) if g < depth]
        if depth >= len(GROUPS):
            frozen += [self._conv_head, self._bn1]
        for m in frozen:
            m.requires_grad_(False)
        self.frozen = frozen

    def train(self, mode=True):
        super().train(mode)
        for m in getattr(self, "frozen", []):
            m.eval()
        return self


def check_reference(weights):
    """The real weights at 224x224 must reproduce the reference logits (bound 1e-3, as parity.rs)."""
    if not REFERENCE.exists():
        print(f"reference check SKIPPED: no {REFERENCE}")
        return
    ref = json.loads(REFERENCE.read_text())
    model = EfficientNetLite0()
    model.load_state_dict(weights)
    model.eval()
    x = torch.tensor(ref["input"]["data"], dtype=torch.float32).reshape(ref["input"]["shape"])
    with torch.no_grad():
        logits = model(x)
    want = torch.tensor(ref["logits"]["data"], dtype=torch.float32).reshape(ref["logits"]["shape"])
    diff = (logits - want).abs().max().item()
    top5 = [[c["class"] for c in photo] for photo in ref["top5"]]
    ok = diff < 1e-3 and logits.topk(5).indices.tolist() == top5
    print(f"reference check: max abs logit difference {diff:.2e}, top-5 {'identical' if ok else 'DIFFERENT'}")
    if not ok:
        sys.exit("the PyTorch twin does not reproduce the reference logits: not timing it")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--weights", required=True, help="the ImageNet state_dict (scripts/fetch-efficientnet.sh)")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--epochs", type=int, default=1, help="timed epochs (one more runs first, untimed)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--freeze-depth", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    weights = torch.load(a.weights, map_location="cpu", weights_only=True)
    check_reference(weights)

    x, y = load("train")
    x, y, vx, vy = stratified_split(x, y, 0.2)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def prepare(images):  # x was normalised to [-1, 1]: back to [0, 1], grey -> RGB, resize, ImageNet
        images = images.mul(0.5).add(0.5).repeat(1, 3, 1, 1)
        images = F.interpolate(images, size=a.image_size, mode="bilinear", align_corners=False)
        return (images - mean) / std

    x, vx = prepare(x), prepare(vx)
    model = EfficientNetLite0(classes=10, image_size=a.image_size)
    model.load_state_dict({k: v for k, v in weights.items() if not k.startswith("_fc.")}, strict=False)
    model.freeze(a.freeze_depth)
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-3, eps=1e-8, weight_decay=0.0)
    train_rates, eval_rates, accuracy = timed_epochs(model, opt, x, y, vx, vy, a.epochs + 1, a.batch_size)
    mean_of = lambda r: sum(r[1:]) / len(r[1:])  # noqa: E731
    print(f"pytorch {torch.__version__} efficientnet-lite0 {a.image_size}x{a.image_size} batch {a.batch_size} "
          f"freeze_depth {a.freeze_depth}, {a.threads} thread(s): {mean_of(train_rates):.1f} images/s training, "
          f"eval {mean_of(eval_rates):.1f} images/s ({len(x)} train / {len(vx)} val images; "
          f"last val accuracy {accuracy:.3f})")


if __name__ == "__main__":
    main()
