#!/usr/bin/env python3
"""Writes the training-step parity fixture: what PyTorch computes for a few optimiser steps of nightshift's
small CNN and of ResNet-18, for `crates/trainer/tests/training_parity.rs` to reproduce with `fine_tune`.

The reference is PyTorch in float64 — the trajectory the float32 arithmetic of both PyTorch and nightshift
approximates — and the fixture records how far PyTorch's own float32 run lands from it. That distance is the
noise floor of the comparison: ResNet-18 memorising 8 images grows float32 rounding (1e-7) about 4e4-fold in
four steps, so PyTorch float32 ends 1e-3 from PyTorch float64 (and from any other float32 implementation),
while each step's gradients, computed before any amplification, agree to 1e-5.

    /var/tmp/nightshift-venv/bin/python benches/make_training_fixture.py   # or any python with torch + numpy

Writes crates/trainer/tests/fixtures/training/{small_cnn,resnet18}.json (≈0.6 MB together). Each holds:
- the input batch (8 images 3×32×32 as u8 pixels, ImageNet-normalised as nightshift's Batcher does) and labels;
- the state-dict names and shapes. Initial weights are NOT stored: ResNet-18's 11.2 M parameters would take
  45 MB, so every tensor is filled by `init_value` below (a splitmix64 hash of the tensor's name and the
  element's index, scaled like PyTorch's default init), which the Rust test recomputes bit for bit;
- the gradients of the first step (training mode, mean cross-entropy), per parameter: the values at
  `sample_indices` and the L2 norm; plus PyTorch float32's distance from them;
- per scenario (AdamW with weight decay; SGD with momentum and weight decay; AdamW with freeze_depth 1): the
  learning rate and loss of every step, and after the last step, per tensor, the values at up to
  SAMPLES evenly spaced flat indices (`sample_indices`) plus the L2 norm of (final - initial) over the
  whole tensor, BatchNorm running statistics included; plus PyTorch float32's distance from them, measured
  as the Rust test measures its own (`distance` below).

The steps follow `crates/trainer/src/train.rs`: one batch per epoch (batch size = dataset size), the learning
rate from `cosine_with_warmup` with warmup = ceil(warmup_fraction * total_steps), AdamW with betas 0.9/0.999,
eps 1e-8 and decoupled weight decay, SGD with undampened momentum and L2 weight decay, BatchNorm in training
mode except in frozen blocks (eval mode, no gradients), mean cross-entropy.
"""
import json, math, sys
from pathlib import Path

try:
    import numpy as np
    import torch
    import torch.nn as nn
except ImportError:
    print("SKIPPED: torch and numpy are needed (pip install torch numpy)")
    sys.exit(0)

OUT = Path(__file__).resolve().parent.parent / "crates" / "trainer" / "tests" / "fixtures" / "training"
BATCH, SIZE, CLASSES, SAMPLES = 8, 32, 10, 128
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # Normalization::imagenet()
MASK = (1 << 64) - 1

# Four steps, so that both parts of the schedule show: warm-up 0.5p, p, then cosine p, 0.5p.
SCENARIOS = {
    "adamw": dict(optimizer={"kind": "adamw"}, learning_rate=1e-3, weight_decay=0.1, freeze_depth=0),
    "sgd_momentum": dict(optimizer={"kind": "sgd", "momentum": 0.9}, learning_rate=0.05, weight_decay=0.01, freeze_depth=0),
    "adamw_freeze1": dict(optimizer={"kind": "adamw"}, learning_rate=1e-3, weight_decay=0.1, freeze_depth=1),
}
EPOCHS, WARMUP_FRACTION = 4, 0.5


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & MASK
    return h


def splitmix64(x):
    """Vectorised over a uint64 array; numpy's uint64 arithmetic wraps like Rust's wrapping_*."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def init_value(name, shape):
    """The deterministic initial weights (float32), mirrored by `init_value` in training_parity.rs."""
    n = int(np.prod(shape))
    with np.errstate(over="ignore"):
        h = splitmix64(np.uint64(fnv1a64(name)) + np.arange(n, dtype=np.uint64))
    u = (h >> np.uint64(40)).astype(np.float64) / float(1 << 24)  # [0, 1), exact in f64
    v = 2.0 * u - 1.0
    if name.endswith("running_var"):
        x = 0.5 + u
    elif name.endswith("running_mean"):
        x = 0.1 * v
    elif len(shape) == 1 and name.endswith("weight"):  # BatchNorm gamma, randomised so mapping slips show
        x = 1.0 + 0.2 * v
    elif len(shape) == 1:  # BatchNorm beta or a bias
        x = 0.1 * v
    else:  # conv / linear weight: uniform(±1/sqrt(fan_in)), PyTorch's default scale
        x = v / math.sqrt(n // shape[0])
    return x.astype(np.float32).reshape(shape)


def sample_indices(n):
    m = min(n, SAMPLES)
    return [0] if m == 1 else [k * (n - 1) // (m - 1) for k in range(m)]


def cosine_with_warmup(step, total, warmup, peak):
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


class ConvBlock(nn.Module):
    def __init__(self, cin, cout, pool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x):
        return self.pool(torch.relu(self.bn(self.conv(x))))


class SmallCnn(nn.Module):
    """nightshift's SmallCnn {width 4, depth 2} (crates/trainer/src/model.rs), same parameter names."""

    def __init__(self, width=4, depth=2):
        super().__init__()
        self.stem = ConvBlock(3, width, False)
        self.stages = nn.ModuleList(ConvBlock(width << i, width << (i + 1), True) for i in range(depth))
        self.fc = nn.Linear(width << depth, CLASSES)

    def frozen(self, depth):
        return [self.stem] + list(self.stages[:depth]) if depth else []

    def forward(self, x):
        x = self.stem(x)
        for s in self.stages:
            x = s(x)
        return self.fc(x.mean((2, 3)))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    """torchvision's resnet18 layout and names (torchvision itself is not needed)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, layers = 64, []
        for width, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers.append(nn.Sequential(BasicBlock(cin, width, stride), BasicBlock(width, width, 1)))
            cin = width
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(512, CLASSES)

    def frozen(self, depth):
        return ([self.conv1, self.bn1] + [self.layer1, self.layer2, self.layer3, self.layer4][:depth]) if depth else []

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
        return self.fc(x.mean((2, 3)))


def tensors(model):
    """Parameters and running statistics by state-dict name (PyTorch's num_batches_tracked has no burn twin)."""
    return {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def initialised(make_model, dtype):
    torch.manual_seed(0)
    model = make_model().to(dtype)
    with torch.no_grad():
        for name, t in tensors(model).items():
            t.copy_(torch.from_numpy(init_value(name, tuple(t.shape))))
    return model


def batch(pixels, labels, dtype):
    """Batcher: (pixel / 255 - mean) / std in float32 (then widened: both runs see the same input)."""
    x = pixels.astype(np.float32) / np.float32(255.0)
    x = (x - np.array(MEAN, np.float32)[None, :, None, None]) / np.array(STD, np.float32)[None, :, None, None]
    return torch.from_numpy(x).to(dtype), torch.from_numpy(labels.astype(np.int64))


def first_step_gradients(make_model, pixels, labels, dtype):
    model = initialised(make_model, dtype)
    model.train()
    x, y = batch(pixels, labels, dtype)
    nn.functional.cross_entropy(model(x), y).backward()
    grads = {}
    for name, p in model.named_parameters():
        flat = p.grad.detach().flatten().double().numpy()
        grads[name] = {"samples": [float(flat[i]) for i in sample_indices(flat.size)],
                       "l2": float(np.sqrt((flat * flat).sum()))}
    return grads


def run(make_model, pixels, labels, scenario, dtype):
    model = initialised(make_model, dtype)
    names = list(tensors(model))
    initial = {k: v.clone() for k, v in tensors(model).items()}

    model.train()
    for module in model.frozen(scenario["freeze_depth"]):
        module.eval()  # burn's Module::freeze: no gradients, BatchNorm on its running statistics
        for p in module.parameters():
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    lr, wd = scenario["learning_rate"], scenario["weight_decay"]
    if scenario["optimizer"]["kind"] == "adamw":
        opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=scenario["optimizer"]["momentum"], dampening=0,
                              weight_decay=wd, nesterov=False)

    x, y = batch(pixels, labels, dtype)
    total, warmup = EPOCHS, math.ceil(WARMUP_FRACTION * EPOCHS)
    lrs, losses = [], []
    for step in range(total):
        step_lr = cosine_with_warmup(step, total, warmup, lr)
        for group in opt.param_groups:
            group["lr"] = step_lr
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        lrs.append(step_lr)
        losses.append(float(loss.detach()))

    final = {}
    for name, t in tensors(model).items():
        flat = t.detach().flatten().double().numpy()
        delta = flat - initial[name].flatten().double().numpy()
        frozen = any(name.startswith(prefix) for prefix in frozen_prefixes(model, scenario["freeze_depth"]))
        if frozen:
            assert not delta.any(), f"frozen {name} changed"
        final[name] = {
            "samples": [float(flat[i]) for i in sample_indices(flat.size)],
            "update_l2": float(np.sqrt((delta * delta).sum())),
            "frozen": frozen,
        }
    return names, {"learning_rates": lrs, "losses": losses, "final": final}


def relative_diff(ours, theirs, floor):
    """As in training_parity.rs: relative to the larger of the value and `floor`."""
    return abs(ours - theirs) / max(abs(theirs), floor)


def distance(result, reference, scale):
    """How far a run's losses, sampled weights and update norms are from the reference's: the measures
    (and the weights' floor, the largest initial magnitude of each tensor) that training_parity.rs uses."""
    loss = max(relative_diff(a, b, 0.0) for a, b in zip(result["losses"], reference["losses"]))
    weights = update = 0.0
    for name, ref in reference["final"].items():
        ours = result["final"][name]
        weights = max([weights] + [relative_diff(a, b, scale[name]) for a, b in zip(ours["samples"], ref["samples"])])
        update = max(update, relative_diff(ours["update_l2"], ref["update_l2"], 1e-12))
    return {"loss": loss, "weights": weights, "update_norm": update}


def gradient_distance(grads, reference):
    worst = 0.0
    for name, ref in reference.items():
        scale = max(abs(v) for v in ref["samples"])
        worst = max([worst, relative_diff(grads[name]["l2"], ref["l2"], 1e-12)]
                    + [relative_diff(a, b, scale) for a, b in zip(grads[name]["samples"], ref["samples"])])
    return worst


def frozen_prefixes(model, depth):
    named = {id(m): n for n, m in model.named_modules()}
    return [named[id(m)] + "." for m in model.frozen(depth)]


def compact(value):
    """float32 values as their shortest round-tripping decimal, to keep the JSON small."""
    if isinstance(value, float):
        return float(np.format_float_positional(np.float32(value), unique=True, trim="-"))
    if isinstance(value, list):
        return [compact(v) for v in value]
    if isinstance(value, dict):
        return {k: compact(v) if k not in ("learning_rates", "learning_rate", "weight_decay", "pytorch_float32_distance")
                else v for k, v in value.items()}
    return value


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(14)
    pixels = rng.integers(0, 256, size=(BATCH, 3, SIZE, SIZE), dtype=np.uint8)
    labels = rng.integers(0, CLASSES, size=BATCH)
    OUT.mkdir(parents=True, exist_ok=True)
    for file, make_model in [("small_cnn.json", SmallCnn), ("resnet18.json", ResNet18)]:
        shapes = {k: list(v.shape) for k, v in tensors(make_model()).items()}
        scale = {k: float(np.abs(init_value(k, tuple(v))).max()) for k, v in shapes.items()}
        scenarios = {}
        for name, scenario in SCENARIOS.items():
            if make_model is ResNet18:
                # A tenth of the small CNN's rates: at the full rates ResNet-18 memorises the 8 images within two
                # steps and the losses fall below what float32 resolves.
                scenario = dict(scenario, learning_rate=scenario["learning_rate"] / 10)
            names, result = run(make_model, pixels, labels, scenario, torch.float64)
            _, single = run(make_model, pixels, labels, scenario, torch.float32)
            scenarios[name] = {**scenario, "epochs": EPOCHS, "warmup_fraction": WARMUP_FRACTION, **result,
                               "pytorch_float32_distance": distance(single, result, scale)}
        gradients = first_step_gradients(make_model, pixels, labels, torch.float64)
        single = first_step_gradients(make_model, pixels, labels, torch.float32)
        fixture = {
            "made_by": "benches/make_training_fixture.py",
            "torch": torch.__version__,
            "samples_per_tensor": SAMPLES,
            "tensors": [{"name": n, "shape": shapes[n]} for n in names],
            "pixels": pixels.flatten().tolist(),
            "shape": [BATCH, 3, SIZE, SIZE],
            "labels": labels.tolist(),
            "gradients": compact(gradients),
            "pytorch_float32_gradient_distance": gradient_distance(single, gradients),
            "scenarios": compact(scenarios),
        }
        path = OUT / file
        path.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
        print(f"{path}: {path.stat().st_size / 1e3:.0f} kB, losses "
              + ", ".join(f"{k} {[round(l, 4) for l in v['losses']]}" for k, v in scenarios.items()))
        print(f"  PyTorch float32 from float64: gradients {fixture['pytorch_float32_gradient_distance']:.1e}; "
              + "; ".join(f"{k} " + ", ".join(f"{m} {d:.1e}" for m, d in v["pytorch_float32_distance"].items())
                          for k, v in scenarios.items()))


if __name__ == "__main__":
    main()
