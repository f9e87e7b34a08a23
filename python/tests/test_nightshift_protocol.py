"""Tests of nightshift_protocol: `python -m unittest discover -s python/tests` (run by the Rust test
tests/python_package.rs against the installed package). numpy and torch cases run when those are importable."""

import contextlib
import decimal
import io
import json
import math
import os
import sys
import unittest
from unittest import mock

import nightshift_protocol as ns

try:
    import numpy as np
except ImportError:
    np = None
try:
    import torch
except ImportError:
    torch = None


def lines_of(call, stdin=""):
    """What `call` prints (parsed JSON lines) and returns, with `stdin` as the orchestrator's answers."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), mock.patch.object(sys, "stdin", io.StringIO(stdin)):
        returned = call()
    return [json.loads(line) for line in out.getvalue().splitlines()], returned


class Protocol(unittest.TestCase):
    def test_params_come_from_the_environment(self):
        with mock.patch.dict(os.environ, {"NIGHTSHIFT_PARAMS": '{"lr": 0.01, "opt": "adam"}', "NIGHTSHIFT_TRIAL_NUMBER": "7"}):
            self.assertEqual(ns.params(), {"lr": 0.01, "opt": "adam"})
            self.assertEqual(ns.trial_number(), 7)
        with mock.patch.dict(os.environ, {}, clear=True):
            self.assertEqual(ns.params(), {})
            self.assertEqual(ns.device(), "cpu")
            self.assertIsNone(ns.trial_number())

    def test_report_prints_one_line_and_reads_the_answer(self):
        lines, pruned = lines_of(lambda: ns.report(3, 0.5, loss=1.25), '{"prune": true}\n')
        self.assertEqual(lines, [{"report": {"step": 3, "value": 0.5, "metrics": {"loss": 1.25}}}])
        self.assertTrue(pruned)
        _, pruned = lines_of(lambda: ns.report(4, 0.6), '{"continue": true}\n')
        self.assertFalse(pruned)
        _, pruned = lines_of(lambda: ns.report(5, 0.7), "")
        self.assertFalse(pruned, "no answer (orchestrator gone) is not a prune")

    def test_result_and_python_non_finite_values(self):
        lines, _ = lines_of(lambda: ns.result(float("nan"), acc=decimal.Decimal("0.25")))
        self.assertTrue(math.isnan(lines[0]["result"]["value"]))
        self.assertEqual(lines[0]["result"]["metrics"], {"acc": 0.25})

    def test_bad_steps_and_values_are_refused_clearly(self):
        with self.assertRaises(TypeError):
            ns.report(1.5, 0.1)
        with self.assertRaises(ValueError):
            ns.report(-1, 0.1)
        with self.assertRaises(ValueError):  # beyond what the orchestrator stores
            ns.report(2**63, 0.1)
        with self.assertRaisesRegex(TypeError, "cannot report a value of type object"):
            ns.result(object())

    @unittest.skipIf(np is None, "numpy is not installed")
    def test_numpy_scalars_and_one_element_arrays(self):
        lines, _ = lines_of(lambda: ns.report(np.int64(2), np.float32(0.5), loss=np.float16(0.25), n=np.int32(3), ok=np.bool_(True)), "")
        self.assertEqual(lines, [{"report": {"step": 2, "value": 0.5, "metrics": {"loss": 0.25, "n": 3, "ok": True}}}])
        lines, _ = lines_of(lambda: ns.result(np.array([[0.75]], dtype=np.float32)))
        self.assertEqual(lines[0]["result"]["value"], 0.75)
        self.assertEqual(lines_of(lambda: ns.result(np.float32(0.1)))[0][0]["result"]["value"], float(np.float32(0.1)))
        with self.assertRaisesRegex(TypeError, r"shape \(2,\)"):
            ns.result(np.array([0.1, 0.2]))

    @unittest.skipIf(torch is None, "torch is not installed")
    def test_torch_tensors_with_one_element(self):
        loss = (torch.ones(3, requires_grad=True) * 0.5).mean()
        lines, _ = lines_of(lambda: ns.report(torch.tensor(1), torch.tensor(0.25), loss=loss), "")
        self.assertEqual(lines, [{"report": {"step": 1, "value": 0.25, "metrics": {"loss": 0.5}}}])
        with self.assertRaisesRegex(TypeError, r"shape \(2,\)"):
            ns.result(torch.zeros(2))

    def test_out_of_memory_becomes_an_oom_line_and_exit_75(self):
        class OutOfMemoryError(RuntimeError):  # the shape of torch.cuda.OutOfMemoryError
            pass

        def fails():
            with ns.catch_out_of_memory():
                raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")

        with self.assertRaises(SystemExit) as exit_:
            with contextlib.redirect_stderr(io.StringIO()):
                lines_of(fails)
        self.assertEqual(exit_.exception.code, ns.EXIT_OUT_OF_MEMORY)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()), self.assertRaises(SystemExit):
            fails()
        self.assertEqual(
            json.loads(out.getvalue()), {"error": {"kind": "oom", "message": "CUDA out of memory. Tried to allocate 2.00 GiB"}}
        )
        self.assertTrue(ns.is_out_of_memory(RuntimeError("CUDA out of memory.")), "older PyTorch")
        self.assertTrue(ns.is_out_of_memory(MemoryError()))
        with self.assertRaises(ValueError):  # other errors pass through untouched
            with ns.catch_out_of_memory():
                raise ValueError("bad shape")
        lines, _ = lines_of(lambda: ns.error("dataset", "no images"))
        self.assertEqual(lines, [{"error": {"kind": "dataset", "message": "no images"}}])
        with self.assertRaises(ValueError):
            ns.error("", "x")

    @unittest.skipIf(torch is None, "torch is not installed")
    def test_torch_cuda_out_of_memory_error_is_recognised(self):
        self.assertTrue(ns.is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory")))
        self.assertFalse(ns.is_out_of_memory(RuntimeError("Expected all tensors to be on the same device")))


if __name__ == "__main__":
    unittest.main()
