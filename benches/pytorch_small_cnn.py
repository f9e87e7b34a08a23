#!/usr/bin/env python3
"""PyTorch twin of nightshift's small CNN: same layers, data, optimiser, schedule and batch size.

Prints training and validation (eval) throughput (images/s, mean over the epochs after the first) and the test accuracy on the
bundled Fashion-MNIST, for comparison with `cargo bench -p nightshift-trainer --bench trainer_throughput`
and `nightshift trial --test`. Like `nightshift trial`, it holds out a stratified 20 % of the training
images for validation and reports the test accuracy of the epoch with the best validation accuracy
(`--val-fraction 0` trains on everything and tests the last epoch).

    pip install torch numpy
    python3 benches/pytorch_small_cnn.py --epochs 10 --threads 2

Skips (exit 0 with a message) when torch is not installed.
"""
import argparse, copy, gzip, math, struct, sys, time
from pathlib import Path

try:
    import torch
    import torch.nn as nn
except ImportError:
    print("SKIPPED: torch is not installed (pip install torch)")
    sys.exit(0)

DATA = Path(__file__).resolve().parent.parent / "data" / "fashion_mnist_100"


def read_idx(path):
    raw = gzip.open(path).read()
    rank = raw[3]
    dims = struct.unpack(">" + "I" * rank, raw[4:4 + 4 * rank])
    return torch.frombuffer(bytearray(raw[4 + 4 * rank:]), dtype=torch.uint8).reshape(dims)


def load(split):
    x = read_idx(DATA / f"{split}-images-idx3-ubyte.gz").float().div(255).sub(0.5).div(0.5).unsqueeze(1)
    y = read_idx(DATA / f"{split}-labels-idx1-ubyte.gz").long()
    return x, y


def block(cin, cout, pool):
    layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*(layers + ([nn.MaxPool2d(2)] if pool else [])))


class SmallCnn(nn.Module):
    def __init__(self, width=16, depth=3, classes=10, dropout=0.0):
        super().__init__()
        self.stem = block(1, width, False)
        self.stages = nn.Sequential(*[block(width << i, width << (i + 1), True) for i in range(depth)])
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width << depth, classes)

    def forward(self, x):
        x = self.stages(self.stem(x)).mean(dim=(2, 3))
        return self.fc(self.dropout(x))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x, y = load("train")
    tx, ty = load("t10k")
    x, y, vx, vy = stratified_split(x, y, a.val_fraction)
    model = SmallCnn()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    steps = math.ceil(len(x) / a.batch_size)
    total, warm = steps * a.epochs, math.ceil(0.05 * steps * a.epochs)

    def lr_at(step):  # the same warm-up + cosine as nightshift's cosine_with_warmup
        if step < warm:
            return a.lr * (step + 1) / warm
        return a.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    rates, eval_rates, step, best = [], [], 0, None
    for epoch in range(a.epochs):
        model.train()
        order = torch.randperm(len(x))
        start = time.perf_counter()
        for i in range(0, len(x), a.batch_size):
            idx = order[i:i + a.batch_size]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
        rates.append(len(x) / (time.perf_counter() - start))
        if len(vx):
            start = time.perf_counter()
            val_acc = accuracy(model, vx, vy)
            eval_rates.append(len(vx) / (time.perf_counter() - start))
            if best is None or val_acc > best[0]:
                best = (val_acc, epoch + 1, copy.deepcopy(model.state_dict()))
    if best is not None:
        model.load_state_dict(best[2])
    acc = accuracy(model, tx, ty)
    timed = rates[1:] or rates
    timed_eval = eval_rates[1:] or eval_rates or [float("nan")]
    chosen = f"best validation epoch {best[1]}" if best else "last epoch"
    print(f"pytorch {torch.__version__} small-cnn 28x28 batch {a.batch_size}, {a.threads} threads: "
          f"{sum(timed) / len(timed):.0f} images/s; eval {sum(timed_eval) / len(timed_eval):.0f} images/s; "
          f"test accuracy {acc:.4f} ({chosen} of {a.epochs})")


def accuracy(model, x, y, batch_size=64):
    """In batches of 64, as nightshift evaluates (the eval images/s compares the two)."""
    model.eval()
    with torch.no_grad():
        correct = sum((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
                      for i in range(0, len(x), batch_size))
    return correct / len(x)


def timed_epochs(model, opt, x, y, vx, vy, epochs, batch_size, device=torch.device("cpu")):
    """The throughput twins' loop: per epoch, train on (x, y) in shuffled batches (timed), then evaluate
    (vx, vy) in eval mode without gradients, in batches of 64 as nightshift does (timed). Returns the training
    and eval images/s of every epoch and the last validation accuracy."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    train_rates, eval_rates, accuracy = [], [], 0.0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), device=device)
        sync()
        start = time.perf_counter()
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sync()
        train_rates.append(len(x) / (time.perf_counter() - start))
        model.eval()
        start = time.perf_counter()
        with torch.no_grad():
            correct = sum((model(vx[i:i + 64]).argmax(1) == vy[i:i + 64]).sum().item() for i in range(0, len(vx), 64))
        eval_rates.append(len(vx) / (time.perf_counter() - start))
        accuracy = correct / max(1, len(vx))
    return train_rates, eval_rates, accuracy


def stratified_split(x, y, val_fraction):
    """Per class: shuffle, hold out round(n * val_fraction) (at least 1) for validation."""
    if val_fraction <= 0:
        return x, y, x[:0], y[:0]
    train, val = [], []
    for c in y.unique().tolist():
        members = (y == c).nonzero().flatten()
        members = members[torch.randperm(len(members))]
        n_val = max(1, round(len(members) * val_fraction))
        val.append(members[:n_val])
        train.append(members[n_val:])
    train, val = torch.cat(train).sort().values, torch.cat(val).sort().values
    return x[train], y[train], x[val], y[val]


if __name__ == "__main__":
    main()
