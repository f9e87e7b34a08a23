#!/usr/bin/env python3
"""Writes the binary fuzz seeds into fuzz/seeds/: IDX pairs (from data/mnist_tiny), PNG/JPEG images, and
safetensors/.pth checkpoints for the fuzz targets' small CNN. Needs Python 3 with Pillow; no PyTorch (the .pth
files are written the way torch.save does: a zip with a pickled OrderedDict of _rebuild_tensor_v2 calls).

    python3 fuzz/make_seeds.py

Each seed starts with the target's own header (see fuzz/fuzz_targets/*.rs): idx a 2-byte big-endian length of
the image file, image and checkpoints one selector byte.
"""

import collections
import gzip
import io
import json
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"


def write(target, name, data):
    path = SEEDS / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    print(f"{path.relative_to(ROOT)}: {len(data)} bytes")


# --- IDX ----------------------------------------------------------------------------------------------------

def idx(dims, payload):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(payload)


def idx_seed(images, labels):
    return struct.pack(">H", len(images)) + images + labels


def idx_seeds():
    mnist = ROOT / "data" / "mnist_tiny"
    pixels = gzip.decompress((mnist / "train-images-idx3-ubyte.gz").read_bytes())
    labels = gzip.decompress((mnist / "train-labels-idx1-ubyte.gz").read_bytes())
    n, h, w = struct.unpack(">III", pixels[4:16])
    assert pixels[:4] == bytes([0, 0, 8, 3]) and (h, w) == (28, 28), (n, h, w)
    two = pixels[16 : 16 + 2 * h * w]
    images, labs = idx([2, h, w], two), idx([2], labels[8:10])
    write("idx", "mnist-2-raw", idx_seed(images, labs))
    write("idx", "mnist-2-gzip", idx_seed(gzip.compress(images, mtime=0), gzip.compress(labs, mtime=0)))
    write("idx", "tiny-3-classes", idx_seed(idx([3, 2, 2], range(12)), idx([3], [0, 1, 2])))


# --- Images -------------------------------------------------------------------------------------------------

# Selector bit 0: 0 = decode as .png, 1 = as .jpg; bit 1: 0 = 1 channel, 1 = 3 channels.
def image_seeds():
    rgb = Image.new("RGB", (6, 5))
    rgb.putdata([(x * 40, y * 50, (x + y) * 20) for y in range(5) for x in range(6)])
    for name, img, fmt, selector, opts in [
        ("rgb.png", rgb, "PNG", 0b10, {}),
        ("gray.png", rgb.convert("L"), "PNG", 0b00, {}),
        ("palette-alpha.png", rgb.convert("P").convert("RGBA"), "PNG", 0b10, {}),
        ("gray16.png", rgb.convert("I;16"), "PNG", 0b00, {}),
        ("rgb.jpg", rgb, "JPEG", 0b11, {"quality": 80}),
        ("gray.jpg", rgb.convert("L"), "JPEG", 0b01, {"quality": 80}),
        ("progressive.jpg", rgb, "JPEG", 0b11, {"quality": 60, "progressive": True}),
    ]:
        out = io.BytesIO()
        img.save(out, fmt, **opts)
        write("image", name, bytes([selector]) + out.getvalue())


# --- Checkpoints --------------------------------------------------------------------------------------------

def small_cnn(classes):
    """State dict of the fuzz targets' SmallCnn (width 2, depth 1, 1 input channel), PyTorch names and layout."""
    shapes = collections.OrderedDict()
    for block, (cin, cout) in [("stem", (1, 2)), ("stages.0", (2, 4))]:
        shapes[f"{block}.conv.weight"] = [cout, cin, 3, 3]
        for p in ["weight", "bias", "running_mean", "running_var"]:
            shapes[f"{block}.bn.{p}"] = [cout]
    shapes["fc.weight"] = [classes, 4]
    shapes["fc.bias"] = [classes]
    state = collections.OrderedDict()
    for i, (name, shape) in enumerate(shapes.items()):
        n = 1
        for d in shape:
            n *= d
        # Variances must be positive; anything else is arbitrary but deterministic.
        state[name] = (shape, [1.0 + 0.01 * k if name.endswith("running_var") else 0.1 * ((i + k) % 7 - 3) for k in range(n)])
    return state


def safetensors(state, dtype="F32"):
    fmt = {"F32": "<f", "F64": "<d"}[dtype]
    header, data = {}, b""
    for name, (shape, values) in state.items():
        raw = b"".join(struct.pack(fmt, v) for v in values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def fake_torch():
    """Just enough of a `torch` module for pickle to write torch.save's references by name."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"

    def _rebuild_tensor_v2(*args):
        raise NotImplementedError

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    torch.FloatStorage, utils._rebuild_tensor_v2, torch._utils = FloatStorage, _rebuild_tensor_v2, utils
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    return FloatStorage, _rebuild_tensor_v2


def pth(state, archive="small_cnn"):
    storage_cls, rebuild = fake_torch()

    class Storage:
        def __init__(self, key, n):
            self.key, self.n = key, n

    class Tensor:
        def __init__(self, storage, shape):
            self.storage, self.shape = storage, shape

        def __reduce__(self):
            stride, acc = [], 1
            for d in reversed(self.shape):
                stride.insert(0, acc)
                acc *= d
            return (rebuild, (self.storage, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", storage_cls, obj.key, "cpu", obj.n)
            return None

    tensors, blobs = collections.OrderedDict(), {}
    for i, (name, (shape, values)) in enumerate(state.items()):
        tensors[name] = Tensor(Storage(str(i), len(values)), shape)
        blobs[str(i)] = b"".join(struct.pack("<f", v) for v in values)
    pkl = io.BytesIO()
    Pickler(pkl, protocol=2).dump(tensors)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{archive}/data.pkl", pkl.getvalue())
        z.writestr(f"{archive}/byteorder", "little")
        for key, blob in blobs.items():
            z.writestr(f"{archive}/data/{key}", blob)
        z.writestr(f"{archive}/version", "3\n")
    return out.getvalue()


# Selector bit 0: 0 = LoadMode::Strict, 1 = LoadMode::Backbone (the head may have another class count).
def checkpoint_seeds():
    fits, other_head = small_cnn(2), small_cnn(3)
    write("checkpoint_safetensors", "strict", b"\x00" + safetensors(fits))
    write("checkpoint_safetensors", "strict-f64", b"\x00" + safetensors(fits, "F64"))
    write("checkpoint_safetensors", "backbone-3-classes", b"\x01" + safetensors(other_head))
    write("checkpoint_pth", "strict", b"\x00" + pth(fits))
    write("checkpoint_pth", "backbone-3-classes", b"\x01" + pth(other_head))


if __name__ == "__main__":
    idx_seeds()
    image_seeds()
    checkpoint_seeds()
