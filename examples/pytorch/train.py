"""Fine-tune-sized PyTorch example for nightshift: a tiny CNN on the bundled Fashion-MNIST cut
(data/fashion_mnist_100: 1,000 training images, 2,000 test images), reporting the test accuracy
after every epoch through the nightshift_protocol package (`pip install ./python`).

    nightshift run examples/pytorch/spec.yaml      # the sweep (see spec.yaml)
    python train.py --epochs 2                     # one run by hand, default hyperparameters

Hyperparameters come from nightshift (NIGHTSHIFT_PARAMS): learning_rate, batch_size, channels,
dropout. The objective is the best test accuracy seen.
"""
import argparse
import gzip
import os
import struct

import torch
from torch import nn

import nightshift_protocol as ns

HERE = os.path.dirname(os.path.abspath(__file__))


def read_idx(path):
    """A gzip'd IDX file (the MNIST format) as a uint8 tensor."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    _, kind, dims = struct.unpack(">HBB", data[:4])
    if kind != 0x08:
        raise ValueError(f"{path}: not a u8 IDX file")
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return torch.frombuffer(bytearray(data[4 + 4 * dims :]), dtype=torch.uint8).reshape(shape)


def load(folder, split):
    images = read_idx(os.path.join(folder, f"{split}-images-idx3-ubyte.gz")).float().div_(255.0).unsqueeze(1)
    labels = read_idx(os.path.join(folder, f"{split}-labels-idx1-ubyte.gz")).long()
    return (images - 0.2860) / 0.3530, labels  # Fashion-MNIST's mean and std


def tiny_cnn(channels, dropout):
    c = channels
    return nn.Sequential(
        nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),          # 28 → 14
        nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),      # 14 → 7
        nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * c * 7 * 7, 10),
    )


def accuracy(model, images, labels):
    model.eval()
    with torch.no_grad():
        return (model(images).argmax(1) == labels).float().mean()  # a 0-d tensor: the package takes it as is


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "data", "fashion_mnist_100"))
    args = ap.parse_args()
    p = ns.params()
    lr = p.get("learning_rate", 3e-3)
    batch_size = int(p.get("batch_size", 32))
    torch.manual_seed(ns.trial_number() or 0)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    device = torch.device(ns.device() if ns.device().startswith("cuda") else "cpu")

    train_x, train_y = load(args.data, "train")
    test_x, test_y = load(args.data, "t10k")
    train_x, train_y, test_x, test_y = (t.to(device) for t in (train_x, train_y, test_x, test_y))
    model = tiny_cnn(int(p.get("channels", 8)), p.get("dropout", 0.1)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()

    best = 0.0
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(train_x), device=device)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(train_x[batch]), train_y[batch])
            loss.backward()
            optimizer.step()
        acc = accuracy(model, test_x, test_y)
        best = max(best, acc.item())
        # The value is a tensor, the metric a tensor with grad history: both are reported as numbers.
        if ns.report(epoch, acc, train_loss=loss):
            return  # pruned: exit promptly
    ns.result(best)


if __name__ == "__main__":
    # A batch too big for the GPU is recorded as out of memory, and the sampler learns to avoid it.
    with ns.catch_out_of_memory():
        main()
