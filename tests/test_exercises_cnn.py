"""The checkers of notebook 02: they accept the reference, name each typical mistake, and wait for a stub."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from course_utils.exercises import cnn


def stub(*args):
    raise NotImplementedError("write this function")


# ---------------------------------------------------------------------------------------------
# References agree with torch
# ---------------------------------------------------------------------------------------------

def test_reference_conv2d_loops_matches_torch():
    g = torch.Generator().manual_seed(3)
    x, w, b = torch.randn(3, 7, 6, generator=g), torch.randn(4, 3, 3, 2, generator=g), torch.randn(4, generator=g)
    assert torch.allclose(cnn.conv2d_loops(x, w, b), F.conv2d(x[None], w, b)[0], atol=1e-5)


@pytest.mark.parametrize("n, k, p, s", [(28, 3, 1, 1), (28, 5, 0, 1), (7, 2, 0, 2), (31, 4, 2, 3)])
def test_reference_conv_output_size_matches_torch(n, k, p, s):
    out = nn.Conv2d(1, 1, k, stride=s, padding=p)(torch.zeros(1, 1, n, n))
    assert cnn.conv_output_size(n, k, p, s) == out.shape[-1]


@pytest.mark.parametrize("i, o, k, bias", [(1, 32, 3, True), (32, 64, 3, False), (3, 16, 5, True)])
def test_reference_conv_param_count_matches_torch(i, o, k, bias):
    layer = nn.Conv2d(i, o, k, bias=bias)
    assert cnn.conv_param_count(i, o, k, bias) == sum(p.numel() for p in layer.parameters())


# ---------------------------------------------------------------------------------------------
# conv2d_loops
# ---------------------------------------------------------------------------------------------

def _loops(x, w, b, *, flip=False, bias=True, size_delta=0, one_channel=False, kh_for_both=False):
    """A loop convolution with one deliberate mistake switched on."""
    c_out, _, kh, kw = w.shape
    if kh_for_both:
        kw = kh
    if flip:
        w = w.flip(-2, -1)
    h_out, w_out = x.shape[1] - kh + 1 + size_delta, x.shape[2] - kw + 1 + size_delta
    out = torch.zeros(c_out, h_out, w_out)
    for o in range(c_out):
        for i in range(h_out):
            for j in range(w_out):
                if one_channel:
                    patch = x[0, i:i + kh, j:j + kw] * w[o, 0, :kh, :kw]
                else:
                    patch = x[:, i:i + kh, j:j + kw] * w[o, :, :kh, :kw]
                out[o, i, j] = patch.sum() + (b[o] if bias else 0)
    return out


def test_conv2d_loops_accepts_reference():
    assert cnn.check_conv2d_loops(cnn.conv2d_loops, quiet=True).status == "passed"


def test_conv2d_loops_accepts_unfold_version():
    def vectorised(x, w, b):
        c_out, c_in, kh, kw = w.shape
        cols = F.unfold(x[None], (kh, kw))[0]  # (c_in*kh*kw, L)
        return (w.reshape(c_out, -1) @ cols + b[:, None]).reshape(c_out, x.shape[1] - kh + 1, x.shape[2] - kw + 1)

    assert cnn.check_conv2d_loops(vectorised, quiet=True).passed


@pytest.mark.parametrize("mistake, word", [
    (dict(flip=True), "cross-correlation"),
    (dict(bias=False), "bias"),
    (dict(size_delta=-1), "off by one"),
    (dict(one_channel=True), "ALL input channels"),
])
def test_conv2d_loops_rejects_typical_mistakes(mistake, word):
    result = cnn.check_conv2d_loops(lambda x, w, b: _loops(x, w, b, **mistake), quiet=True)
    assert result.status == "failed"
    assert word in result.message


def test_conv2d_loops_rejects_one_kernel_size_for_both_sides():
    def clipped(x, w, b):  # loops over kH x kH windows: right for square kernels only
        return _loops(x, w, b, kh_for_both=True)

    result = cnn.check_conv2d_loops(clipped, quiet=True)
    assert result.status == "failed" and "kW = w.shape[3]" in result.message


def test_conv2d_loops_rejects_averaged_channels():
    result = cnn.check_conv2d_loops(lambda x, w, b: F.conv2d(x[None], w)[0] / x.shape[0] + b[:, None, None],
                                    quiet=True)
    assert result.status == "failed" and "ALL input channels" in result.message


def test_conv2d_loops_reports_errors_and_missing_return_as_hints():
    def crashes(x, w, b):
        return x[:, :, :, 0]

    result = cnn.check_conv2d_loops(crashes, quiet=True)
    assert result.status == "failed" and "IndexError" in result.message
    result = cnn.check_conv2d_loops(lambda x, w, b: None, quiet=True)
    assert result.status == "failed" and "forget to return" in result.message


def test_conv2d_loops_not_attempted():
    assert cnn.check_conv2d_loops(stub, quiet=True).status == "not attempted"


# ---------------------------------------------------------------------------------------------
# conv_output_size
# ---------------------------------------------------------------------------------------------

def test_conv_output_size_accepts_reference_and_math_floor():
    assert cnn.check_conv_output_size(cnn.conv_output_size, quiet=True).passed
    assert cnn.check_conv_output_size(lambda n, k, p, s: math.floor((n + 2 * p - k) / s) + 1, quiet=True).passed


@pytest.mark.parametrize("wrong, word", [
    (lambda n, k, p, s: (n + 2 * p - k) // s, "+ 1"),
    (lambda n, k, p, s: (n + p - k) // s + 1, "BOTH sides"),
    (lambda n, k, p, s: (n + 2 * p - k) / s + 1, "whole number"),
    (lambda n, k, p, s: float((n + 2 * p - k) // s + 1), "float"),
    (lambda n, k, p, s: (n + 2 * p) // s - k + 1, "before dividing"),
    (lambda n, k, p, s: math.ceil((n + 2 * p - k) / s) + 1, "round DOWN"),
    (lambda n, k, p, s: n - k + 1, "should be"),
])
def test_conv_output_size_rejects_typical_mistakes(wrong, word):
    result = cnn.check_conv_output_size(wrong, quiet=True)
    assert result.status == "failed"
    assert word in result.message


def test_conv_output_size_not_attempted():
    assert cnn.check_conv_output_size(stub, quiet=True).status == "not attempted"


# ---------------------------------------------------------------------------------------------
# conv_param_count
# ---------------------------------------------------------------------------------------------

def test_conv_param_count_accepts_reference():
    assert cnn.check_conv_param_count(cnn.conv_param_count, quiet=True).passed


@pytest.mark.parametrize("wrong, word", [
    (lambda i, o, k, bias: o * i * k * k, "bias is missing"),
    (lambda i, o, k, bias: o * i * k * k + o, "bias=False"),
    (lambda i, o, k, bias: o * k * k + (o if bias else 0), "ALL input channels"),
    (lambda i, o, k, bias: o * i * k + (o if bias else 0), "k * k"),
    (lambda i, o, k, bias: o * i * k * k + (i if bias else 0), "OUTPUT channel"),
    (lambda i, o, k, bias: float(o * i * k * k + (o if bias else 0)), "int"),
    (lambda i, o, k, bias: (o + 1) * i * k * k, "should be"),
])
def test_conv_param_count_rejects_typical_mistakes(wrong, word):
    result = cnn.check_conv_param_count(wrong, quiet=True)
    assert result.status == "failed"
    assert word in result.message


def test_conv_param_count_not_attempted():
    assert cnn.check_conv_param_count(stub, quiet=True).status == "not attempted"


def test_checker_prints_verdict(capsys):
    cnn.check_conv_param_count(cnn.conv_param_count)
    assert "PASSED conv_param_count" in capsys.readouterr().out
