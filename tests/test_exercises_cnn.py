"""The checkers of notebook 02: they accept the reference, name each typical mistake, and wait for a stub."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from learner_answers import stub
from torch import nn
from torch.nn import functional as F

from course_utils.exercises import cnn

# ---------------------------------------------------------------------------------------------
# References agree with torch
# ---------------------------------------------------------------------------------------------

def test_reference_conv2d_loops_matches_torch():
    g = torch.Generator().manual_seed(3)
    x, w, b = torch.randn(3, 7, 6, generator=g), torch.randn(4, 3, 3, 2, generator=g), torch.randn(4, generator=g)
    assert torch.allclose(cnn.conv2d_loops(x, w, b), F.conv2d(x[None], w, b)[0], atol=1e-5)
    assert torch.allclose(cnn._conv(x, w, b), F.conv2d(x[None], w, b)[0], atol=1e-5)


@pytest.mark.parametrize("n, k, p, s", [(28, 3, 1, 1), (28, 5, 0, 1), (7, 2, 0, 2), (31, 4, 2, 3)])
def test_reference_conv_output_size_matches_torch(n, k, p, s):
    out = nn.Conv2d(1, 1, k, stride=s, padding=p)(torch.zeros(1, 1, n, n))
    assert cnn.conv_output_size(n, k, p, s) == out.shape[-1]


@pytest.mark.parametrize("i, o, k, bias", [(1, 32, 3, True), (32, 64, 3, False), (3, 16, 5, True)])
def test_reference_conv_param_count_matches_torch(i, o, k, bias):
    layer = nn.Conv2d(i, o, k, bias=bias)
    assert cnn.conv_param_count(i, o, k, bias) == sum(p.numel() for p in layer.parameters())


@pytest.mark.parametrize("checker, reference, hidden", [
    (cnn.check_conv2d_loops, cnn.conv2d_loops, 2),
    (cnn.check_conv_output_size, cnn.conv_output_size, 3),
    (cnn.check_conv_param_count, cnn.conv_param_count, 3),
])
def test_checkers_accept_the_reference_and_run_their_hidden_cases(checker, reference, hidden):
    assert checker(reference, quiet=True).passed
    assert checker.hidden_cases_run == hidden
    assert checker(stub, quiet=True).status == "not attempted"


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


def _seed_where(draw, ok, count):
    """A seed whose ``count`` hidden cases (drawn by ``draw``) all satisfy ``ok(args)``."""
    for seed in range(1000):
        generator = torch.Generator().manual_seed(seed)
        if all(ok(*draw(generator)[0]) for _ in range(count)):
            return seed
    raise AssertionError("no such seed")


def vectorised_with_unfold(x, w, b):
    c_out, c_in, kh, kw = w.shape
    cols = F.unfold(x[None], (kh, kw))[0]  # (c_in*kh*kw, L)
    return (w.reshape(c_out, -1) @ cols + b[:, None]).reshape(c_out, x.shape[1] - kh + 1, x.shape[2] - kw + 1)


def with_the_layer(x, w, b):
    layer = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]))
    with torch.no_grad():
        layer.weight.copy_(w)
        layer.bias.copy_(b)
    return layer(x[None])[0].detach()


@pytest.mark.parametrize("answer, name", [
    (vectorised_with_unfold, "`F.unfold`"),
    (lambda x, w, b: F.conv2d(x[None], w, b)[0], "`F.conv2d`"),
    (lambda x, w, b: torch.conv2d(x[None], w, b)[0], "`F.conv2d`"),
    (lambda x, w, b: torch.convolution(x[None], w, b, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)[0],
     "`torch.convolution`"),
    (lambda x, w, b: x.unfold(1, w.shape[2], 1), "`Tensor.unfold`"),
    (with_the_layer, "Conv2d.forward"),
])
def test_conv2d_loops_rejects_the_library_convolutions(answer, name):
    result = cnn.check_conv2d_loops(answer, quiet=True)
    assert result.status == "failed" and name in result.message, result.message


@pytest.mark.parametrize("answer", [
    lambda x, w, b: cnn.conv2d_loops(x.double(), w.double(), b.double()),
    lambda x, w, b: torch.stack([(x[:, i:i + w.shape[2], j:j + w.shape[3]][None] * w).sum(dim=(1, 2, 3)) + b
                                 for i in range(x.shape[1] - w.shape[2] + 1)
                                 for j in range(x.shape[2] - w.shape[3] + 1)], dim=1)
    .reshape(w.shape[0], x.shape[1] - w.shape[2] + 1, x.shape[2] - w.shape[3] + 1),
])
def test_conv2d_loops_accepts_valid_alternatives(answer):
    result = cnn.check_conv2d_loops(answer, quiet=True)
    assert result.passed, result.message


@pytest.mark.parametrize("mistake", cnn.CONV_MISTAKES, ids=lambda m: m.name)
def test_conv2d_loops_names_each_mistake(mistake):
    result = cnn.check_conv2d_loops(mistake.compute, quiet=True)
    assert result.status == "failed" and result.message == mistake.hint


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

    seed = _seed_where(cnn._hidden_conv, lambda x, w, b: w.shape[2] <= w.shape[3], 2)  # where it does not crash
    result = cnn.check_conv2d_loops(clipped, quiet=True, seed=seed)
    assert result.status == "failed" and "kW = w.shape[3]" in result.message, result.message


def test_conv2d_loops_rejects_averaged_channels():
    result = cnn.check_conv2d_loops(lambda x, w, b: _loops(x, w, b, bias=False) / x.shape[0] + b[:, None, None],
                                    quiet=True)
    assert result.status == "failed" and "averaged" in result.message and "ALL input channels" in result.message


def test_conv2d_loops_names_a_mistake_only_when_it_matches_every_case():
    first = cnn.CONV_CASES[0].args[0]

    def no_bias_on_the_first_case_only(x, w, b):
        return _loops(x, w, b, bias=not torch.equal(x, first)) * (1 if torch.equal(x, first) else 2)

    result = cnn.check_conv2d_loops(no_bias_on_the_first_case_only, quiet=True)
    assert result.status == "failed" and "bias" not in result.message, result.message


def test_conv2d_loops_rejects_changing_an_input_in_place():
    def in_place(x, w, b):
        out = cnn.conv2d_loops(x, w, b)
        w.zero_()
        return out

    result = cnn.check_conv2d_loops(in_place, quiet=True)
    assert result.status == "failed" and "changed its input `w` in place" in result.message


def test_conv2d_loops_rejects_a_hard_coded_answer():
    fixed = [(case.args[0], cnn.conv2d_loops(*case.args)) for case in cnn.CONV_CASES]

    def hard_coded(x, w, b):
        return next((out for xs, out in fixed if xs.shape == x.shape and torch.equal(xs, x)),
                    torch.zeros(w.shape[0], x.shape[1] - w.shape[2] + 1, x.shape[2] - w.shape[3] + 1))

    result = cnn.check_conv2d_loops(hard_coded, quiet=True)
    assert result.status == "failed" and "a hidden case" in result.message


def test_conv2d_loops_hidden_cases_vary_the_kernel_shape():
    generator = torch.Generator().manual_seed(0)
    shapes = [tuple(cnn._hidden_conv(generator)[0][1].shape) for _ in range(20)]
    assert any(kh != kw for _, _, kh, kw in shapes) and len(set(shapes)) > 10


def test_conv2d_loops_reports_errors_and_missing_return_as_hints():
    def crashes(x, w, b):
        return x[:, :, :, 0]

    result = cnn.check_conv2d_loops(crashes, quiet=True)
    assert result.status == "failed" and "IndexError" in result.message
    result = cnn.check_conv2d_loops(lambda x, w, b: None, quiet=True)
    assert result.status == "failed" and "forget to return" in result.message
    result = cnn.check_conv2d_loops(lambda x, w, b: cnn.conv2d_loops(x, w, b)[None], quiet=True)
    assert result.status == "failed" and "expected shape (3, 3, 4), got (1, 3, 3, 4)" in result.message


def test_conv2d_loops_not_attempted():
    assert cnn.check_conv2d_loops(stub, quiet=True).status == "not attempted"


# ---------------------------------------------------------------------------------------------
# conv_output_size
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer", [
    cnn.conv_output_size,
    lambda n, k, p, s: math.floor((n + 2 * p - k) / s) + 1,
    lambda n, k, p, s: np.int64((n + 2 * p - k) // s + 1),
    lambda n, k, p, s: int(np.floor((n + 2 * p - k) / s)) + 1,
    lambda n, k, p, s: torch.tensor((n + 2 * p - k) // s + 1),
])
def test_conv_output_size_accepts_valid_alternatives(answer):
    assert cnn.check_conv_output_size(answer, quiet=True).passed


@pytest.mark.parametrize("wrong, word", [
    (lambda n, k, p, s: (n + 2 * p - k) // s, "+ 1"),
    (lambda n, k, p, s: (n + p - k) // s + 1, "BOTH sides"),
    (lambda n, k, p, s: (n + 2 * p - k) / s + 1, "whole number"),
    (lambda n, k, p, s: float((n + 2 * p - k) // s + 1), "float"),
    (lambda n, k, p, s: np.float64((n + 2 * p - k) // s + 1), "float"),
    (lambda n, k, p, s: (n + 2 * p) // s - k + 1, "before dividing"),
    (lambda n, k, p, s: math.ceil((n + 2 * p - k) / s) + 1, "round DOWN"),
    (lambda n, k, p, s: n - k + 1, "conv_output_size(n=28, k=3, p=1, s=1) returned 26, which is too small"),
    (lambda n, k, p, s: str(n), "return a Python int"),
])
def test_conv_output_size_rejects_typical_mistakes(wrong, word):
    result = cnn.check_conv_output_size(wrong, quiet=True)
    assert result.status == "failed"
    assert word in result.message, result.message
    assert "should be" not in result.message


@pytest.mark.parametrize("mistake", cnn.SIZE_MISTAKES, ids=lambda m: m.name)
def test_conv_output_size_names_each_mistake(mistake):
    result = cnn.check_conv_output_size(mistake.compute, quiet=True)
    assert result.status == "failed" and result.message == mistake.hint


@pytest.mark.parametrize("answer, name", [
    (lambda n, k, p, s: nn.Conv2d(1, 1, k, stride=s, padding=p)(torch.zeros(1, 1, n, n)).shape[-1], "Conv2d.__init__"),
    (lambda n, k, p, s: nn.MaxPool2d(k, stride=s, padding=min(p, k // 2))(torch.zeros(1, 1, n, n)).shape[-1],
     "MaxPool"),
])
def test_conv_output_size_rejects_measuring_a_layer(answer, name):
    result = cnn.check_conv_output_size(answer, quiet=True)
    assert result.status == "failed" and name in result.message, result.message


def test_conv_output_size_names_a_mistake_only_when_it_matches_every_case():
    def forgets_the_one_on_the_first_case_only(n, k, p, s):
        return (n + 2 * p - k) // s + (0 if (n, k, p, s) == cnn.SIZE_CASES[0] else 2)

    result = cnn.check_conv_output_size(forgets_the_one_on_the_first_case_only, quiet=True)
    assert result.status == "failed" and "+ 1" not in result.message, result.message
    assert "conv_output_size(n=28, k=3, p=1, s=1) returned 27, which is too small" in result.message


def test_conv_output_size_rejects_a_hard_coded_answer():
    table = {case: cnn.conv_output_size(*case) for case in cnn.SIZE_CASES}
    result = cnn.check_conv_output_size(lambda n, k, p, s: table.get((n, k, p, s), 1), quiet=True)
    assert result.status == "failed" and "a hidden case (conv_output_size(n=" in result.message


def test_conv_output_size_not_attempted():
    assert cnn.check_conv_output_size(stub, quiet=True).status == "not attempted"


# ---------------------------------------------------------------------------------------------
# conv_param_count
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer", [
    cnn.conv_param_count,
    lambda i, o, k, bias: np.int64(o) * i * k * k + (o if bias else 0),
    lambda i, o, k, bias: o * (i * k * k + int(bias)),
])
def test_conv_param_count_accepts_valid_alternatives(answer):
    assert cnn.check_conv_param_count(answer, quiet=True).passed


@pytest.mark.parametrize("wrong, word", [
    (lambda i, o, k, bias: o * i * k * k, "bias is missing"),
    (lambda i, o, k, bias: o * i * k * k + o, "bias=False"),
    (lambda i, o, k, bias: o * k * k + (o if bias else 0), "ALL input channels"),
    (lambda i, o, k, bias: o * i * k + (o if bias else 0), "k * k"),
    (lambda i, o, k, bias: o * i * k * k + (i if bias else 0), "OUTPUT channel"),
    (lambda i, o, k, bias: float(o * i * k * k + (o if bias else 0)), "int"),
    (lambda i, o, k, bias: (o + 1) * i * k * k,
     "conv_param_count(in_channels=1, out_channels=32, k=3, bias=True) returned 297, which is too small"),
])
def test_conv_param_count_rejects_typical_mistakes(wrong, word):
    result = cnn.check_conv_param_count(wrong, quiet=True)
    assert result.status == "failed"
    assert word in result.message, result.message
    assert "should be" not in result.message


@pytest.mark.parametrize("mistake", cnn.PARAM_MISTAKES, ids=lambda m: m.name)
def test_conv_param_count_names_each_mistake(mistake):
    result = cnn.check_conv_param_count(mistake.compute, quiet=True)
    assert result.status == "failed" and result.message == mistake.hint


def test_conv_param_count_rejects_counting_a_layer():
    def counts_a_layer(i, o, k, bias):
        return sum(p.numel() for p in nn.Conv2d(i, o, k, bias=bias).parameters())

    result = cnn.check_conv_param_count(counts_a_layer, quiet=True)
    assert result.status == "failed" and "Conv2d.__init__" in result.message


def test_conv_param_count_names_a_mistake_only_when_it_matches_every_case():
    def no_bias_on_the_first_case_only(i, o, k, bias):
        return o * i * k * k + (0 if (i, o, k, bias) == cnn.PARAM_CASES[0] else 2 * o * bias)

    result = cnn.check_conv_param_count(no_bias_on_the_first_case_only, quiet=True)
    assert result.status == "failed" and "bias is missing" not in result.message, result.message


def test_conv_param_count_rejects_a_hard_coded_answer():
    table = {case: cnn.conv_param_count(*case) for case in cnn.PARAM_CASES}
    result = cnn.check_conv_param_count(lambda i, o, k, bias: table.get((i, o, k, bias), 1), quiet=True)
    assert result.status == "failed" and "a hidden case (conv_param_count(" in result.message


def test_conv_param_count_not_attempted():
    assert cnn.check_conv_param_count(stub, quiet=True).status == "not attempted"


def test_checker_prints_verdict(capsys):
    cnn.check_conv_param_count(cnn.conv_param_count)
    assert "PASSED conv_param_count" in capsys.readouterr().out
