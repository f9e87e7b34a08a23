"""Speak nightshift's trial protocol (docs/protocol.md) from any Python training script.

``nightshift run`` starts the script with its hyperparameters in ``NIGHTSHIFT_PARAMS``; the script
prints one JSON line per report on stdout and reads the pruner's answer from stdin.

    import nightshift_protocol as ns
    p = ns.params()
    for epoch in range(1, 11):
        acc = train_one_epoch_and_evaluate(p)
        if ns.report(epoch, acc):
            break          # pruned: exit promptly
    else:
        ns.result(acc)

A script that runs out of GPU memory should say so, so that nightshift records the trial as out
of memory (and its sampler stops proposing such settings) rather than as a crash:

    with ns.catch_out_of_memory():      # torch.cuda.OutOfMemoryError → {"error": {"kind": "oom"}}, exit 75
        train(p)

Values may be Python numbers, numpy scalars (``np.float32``, ``np.int64``), arrays or PyTorch
tensors holding one element (on any device, with or without grad), ``Decimal`` or ``Fraction``:
they are written as plain JSON numbers. numpy and torch are never imported here.
"""

import contextlib
import decimal
import fractions
import json
import operator
import os
import sys

__all__ = [
    "params",
    "report",
    "result",
    "error",
    "catch_out_of_memory",
    "is_out_of_memory",
    "EXIT_OUT_OF_MEMORY",
    "device",
    "trial_number",
    "trial_dir",
]

#: The exit code after an out-of-memory error (as ``nightshift trial``'s: sysexits' EX_TEMPFAIL).
EXIT_OUT_OF_MEMORY = 75
__version__ = "0.1.0"


def params():
    """This trial's hyperparameters, e.g. {"learning_rate": 0.01, "batch_size": 32}."""
    return json.loads(os.environ.get("NIGHTSHIFT_PARAMS", "{}"))


def device():
    """Where to train: "cpu", "cuda:0" (the one GPU this trial may use) or "wgpu:1"."""
    return os.environ.get("NIGHTSHIFT_DEVICE", "cpu")


def trial_number():
    """This trial's number in the study, or None when run by hand."""
    number = os.environ.get("NIGHTSHIFT_TRIAL_NUMBER")
    return int(number) if number is not None else None


def trial_dir():
    """A directory for this trial's checkpoints, or None when run by hand."""
    return os.environ.get("NIGHTSHIFT_TRIAL_DIR")


def _plain(value):
    """A value json cannot write, as a plain Python number (json's ``default`` hook)."""
    if isinstance(value, (decimal.Decimal, fractions.Fraction)):
        return float(value)
    item = getattr(value, "item", None)
    if callable(item):
        # numpy scalars and arrays, torch tensors: .item() gives the Python number of a one-element
        # value (a CUDA tensor is copied to the host) and refuses anything larger.
        try:
            return item()
        except (ValueError, RuntimeError) as error:
            shape = getattr(value, "shape", "?")
            raise TypeError(
                f"cannot report a {type(value).__name__} of shape {tuple(shape) if shape != '?' else shape}: "
                f"report one number (e.g. tensor.mean()) ({error})"
            ) from None
    raise TypeError(
        f"cannot report a value of type {type(value).__name__}: report a number "
        "(int, float, a numpy scalar or a one-element tensor)"
    )


def _emit(message):
    print(json.dumps(message, default=_plain), flush=True)


def report(step, value, **metrics):
    """Report an intermediate value (e.g. after an epoch); ``step`` is an integer from 0 to 2**63 - 1.
    Returns True when the trial is pruned: then stop training and exit promptly."""
    step = operator.index(step)  # numpy/torch integers too; 2.0 is refused like the orchestrator would
    if not 0 <= step <= 2**63 - 1:
        raise ValueError(f"step must be an integer from 0 to 2**63 - 1, got {step}")
    _emit({"report": {"step": step, "value": value, "metrics": metrics}})
    if sys.stdin is None or sys.stdin.isatty():
        return False  # run by hand: nobody answers
    answer = sys.stdin.readline()
    return bool(answer) and bool(json.loads(answer).get("prune"))


def result(value, **metrics):
    """Report the final objective value; call once, at the end."""
    _emit({"result": {"value": value, "metrics": metrics}})


def error(kind, message=""):
    """Tell the orchestrator why this trial is about to fail, e.g. ``error("oom", str(exc))``; then
    exit. ``kind`` "oom" (out of memory) is recorded as such and steers the sampler away from these
    parameters; other kinds become the trial's failure reason."""
    if not isinstance(kind, str) or not kind.strip():
        raise ValueError(f"kind must be a non-empty string such as 'oom', got {kind!r}")
    _emit({"error": {"kind": kind, "message": str(message)}})


def is_out_of_memory(exc):
    """Whether ``exc`` says a device (or the host) ran out of memory: ``torch.cuda.OutOfMemoryError``
    (and ``torch.OutOfMemoryError``), a ``RuntimeError`` "CUDA out of memory" of older PyTorch,
    JAX's or TensorFlow's RESOURCE_EXHAUSTED, or ``MemoryError``. torch is not imported here."""
    if isinstance(exc, MemoryError) or type(exc).__name__ in ("OutOfMemoryError", "ResourceExhaustedError"):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "resource_exhausted" in text)


@contextlib.contextmanager
def catch_out_of_memory():
    """Turn an out-of-memory exception raised inside the ``with`` block into the protocol line
    ``{"error": {"kind": "oom", "message": ...}}`` and exit code :data:`EXIT_OUT_OF_MEMORY`; any
    other exception goes on as usual."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is an out-of-memory error
        if not is_out_of_memory(exc):
            raise
        first_line = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        error("oom", first_line.strip())
        print(f"nightshift_protocol: out of memory: {exc}", file=sys.stderr, flush=True)
        sys.exit(EXIT_OUT_OF_MEMORY)
