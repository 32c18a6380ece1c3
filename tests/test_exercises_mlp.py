"""The checkers of notebook 01: they accept the reference, reject each typical mistake with its own
hint, and report a ``raise NotImplementedError`` stub as not attempted."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from course_utils.exercises import mlp


def not_implemented(*args):
    raise NotImplementedError("your code here")


# ---------------------------------------------------------------------------------------------
# The reference implementations agree with torch
# ---------------------------------------------------------------------------------------------

def test_references_agree_with_torch() -> None:
    logits = torch.randn(5, 7, generator=torch.Generator().manual_seed(0)) * 3
    labels = torch.tensor([0, 6, 3, 3, 1])
    torch.testing.assert_close(mlp.stable_softmax(logits), torch.softmax(logits, dim=-1))
    torch.testing.assert_close(mlp.stable_softmax(logits + 1000), torch.softmax(logits, dim=-1))
    torch.testing.assert_close(mlp.cross_entropy(logits, labels), nn.functional.cross_entropy(logits, labels))
    assert mlp.accuracy(logits, labels) == pytest.approx(float((logits.argmax(1) == labels).float().mean()))
    assert isinstance(mlp.accuracy(logits, labels), float)
    model = mlp.make_mlp([32, 16])
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    x, w, b = (torch.randn(*shape, requires_grad=True) for shape in ((4, 6), (3, 6), (3,)))
    grad_out = torch.randn(4, 3)
    F.linear(x, w, b).backward(grad_out)
    for mine, autograd in zip(mlp.linear_backward(x.detach(), w.detach(), grad_out), (x.grad, w.grad, b.grad)):
        torch.testing.assert_close(mine, autograd)
    assert sum(p.numel() for p in model.parameters()) == 784 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10


# ---------------------------------------------------------------------------------------------
# Every checker: reference passes, stub is "not attempted", quiet mode prints nothing
# ---------------------------------------------------------------------------------------------

CHECKERS = [
    (mlp.check_stable_softmax, mlp.stable_softmax),
    (mlp.check_cross_entropy, mlp.cross_entropy),
    (mlp.check_linear_backward, mlp.linear_backward),
    (mlp.check_accuracy, mlp.accuracy),
    (mlp.check_make_mlp, mlp.make_mlp),
]


@pytest.mark.parametrize("checker, reference", CHECKERS)
def test_checker_accepts_the_reference(checker, reference) -> None:
    result = checker(reference, quiet=True)
    assert result.status == "passed", result.message


@pytest.mark.parametrize("checker, reference", CHECKERS)
def test_checker_reports_a_stub_as_not_attempted(checker, reference) -> None:
    result = checker(not_implemented, quiet=True)
    assert result.status == "not attempted"
    assert "NotImplementedError" in result.message


def test_checker_prints_its_verdict(capsys) -> None:
    mlp.check_accuracy(mlp.accuracy)
    assert "PASSED accuracy" in capsys.readouterr().out
    mlp.check_accuracy(not_implemented)
    assert "TODO accuracy" in capsys.readouterr().out


def test_torch_builtins() -> None:
    assert mlp.check_accuracy(lambda x, y: (x.argmax(1) == y).float().mean(), quiet=True).passed
    for loss in (F.cross_entropy, nn.CrossEntropyLoss(), lambda x, y: F.nll_loss(F.log_softmax(x, dim=-1), y)):
        result = mlp.check_cross_entropy(loss, quiet=True)
        assert result.status == "failed"
        assert "`F.cross_entropy`" in result.message or "`F.nll_loss`" in result.message, result.message


def test_make_mlp_check_leaves_the_global_random_state_alone() -> None:
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    mlp.check_make_mlp(mlp.make_mlp, quiet=True)
    torch.testing.assert_close(torch.rand(3), before)


@pytest.mark.parametrize("checker, reference, hidden", [(mlp.check_cross_entropy, mlp.cross_entropy, 3),
                                                       (mlp.check_linear_backward, mlp.linear_backward, 3),
                                                       (mlp.check_accuracy, mlp.accuracy, 3),
                                                       (mlp.check_make_mlp, mlp.make_mlp, 2)])
def test_checkers_run_their_hidden_cases(checker, reference, hidden) -> None:
    assert checker(reference, quiet=True).passed
    assert checker.hidden_cases_run == hidden


# ---------------------------------------------------------------------------------------------
# Exercise 2: stable_softmax
# ---------------------------------------------------------------------------------------------

def softmax_naive(x):
    return x.exp() / x.exp().sum(dim=-1, keepdim=True)


def softmax_global_max(x):
    e = (x - x.max()).exp()
    return e / e.sum(dim=-1, keepdim=True)


def softmax_dim0(x):
    e = (x - x.max(dim=0, keepdim=True).values).exp()
    return e / e.sum(dim=0, keepdim=True)


def softmax_dim1(x):
    e = (x - x.max(dim=1, keepdim=True).values).exp()
    return e / e.sum(dim=1, keepdim=True)


def softmax_unnormalised(x):
    return (x - x.max(dim=-1, keepdim=True).values).exp()


def softmax_no_keepdim(x):
    e = (x - x.max(dim=-1).values).exp()
    return e / e.sum(dim=-1, keepdim=True)


def softmax_sum_no_keepdim(x):
    e = (x - x.max(dim=-1, keepdim=True).values).exp()
    return e / e.sum(dim=-1)


def softmax_column_max(x):
    e = (x - x.max(dim=0, keepdim=True).values).exp()
    return e / e.sum(dim=-1, keepdim=True)


def softmax_returns_log(x):
    shifted = x - x.max(dim=-1, keepdim=True).values
    return shifted - shifted.exp().sum(dim=-1, keepdim=True).log()


def softmax_forgets_return(x):
    (x - x.max(dim=-1, keepdim=True).values).exp()


def softmax_numpy(x):
    return x.numpy()[0]  # crashes on a (2, 3, 4) tensor only after passing nothing


@pytest.mark.parametrize("answer, words", [
    (softmax_naive, ["overflow", "max"]),
    (softmax_global_max, ["whole tensor", "own max"]),
    (softmax_dim0, ["dim 0", "sum to 1"]),
    (softmax_dim1, ["dim 1", "dim=-1"]),
    (softmax_unnormalised, ["not normalised"]),
    (softmax_column_max, ["each column's max"]),
    (softmax_returns_log, ["log-probabilities"]),
    (softmax_forgets_return, ["forget to return"]),
    (lambda x: x, ["differs from the reference"]),
])
def test_stable_softmax_rejects(answer, words) -> None:
    result = mlp.check_stable_softmax(answer, quiet=True)
    assert result.status == "failed"
    for word in words:
        assert word in result.message, result.message


@pytest.mark.parametrize("answer, words", [
    (softmax_no_keepdim, ["keepdim=True", "max()"]),
    (softmax_sum_no_keepdim, ["keepdim=True", "sum()"]),
    (lambda x: x - x.logsumexp(dim=-1, keepdim=True), ["log-probabilities"]),
])
def test_stable_softmax_names_broadcasting_and_log_mistakes(answer, words) -> None:
    result = mlp.check_stable_softmax(answer, quiet=True)
    assert result.status == "failed"
    for word in words:
        assert word in result.message, result.message


def test_stable_softmax_explains_max_returning_a_pair() -> None:
    result = mlp.check_stable_softmax(lambda x: (x - x.max(dim=-1, keepdim=True)).exp(), quiet=True)
    assert result.status == "failed"
    assert ".values" in result.message and "(values, indices)" in result.message


def test_stable_softmax_turns_a_crash_into_a_hint() -> None:
    result = mlp.check_stable_softmax(lambda x: x.exp() / x.exp().sum(dim=2, keepdim=True), quiet=True)
    assert result.status == "failed"
    assert "raised IndexError" in result.message and "(3, 3)" in result.message
    assert "Traceback" not in result.message


# ---------------------------------------------------------------------------------------------
# Exercise 3: cross_entropy
# ---------------------------------------------------------------------------------------------

def log_softmax(x):
    return x - x.logsumexp(dim=-1, keepdim=True)


def ce_block(x, y):
    return -log_softmax(x)[:, y].mean()


def ce_no_minus(x, y):
    return log_softmax(x)[torch.arange(len(y)), y].mean()


def ce_sum(x, y):
    return -log_softmax(x)[torch.arange(len(y)), y].sum()


def ce_per_example(x, y):
    return -log_softmax(x)[torch.arange(len(y)), y]


def ce_probabilities(x, y):
    return -torch.softmax(x, dim=-1)[torch.arange(len(y)), y].mean()


def ce_raw_logits(x, y):
    return -x[torch.arange(len(y)), y].mean()


def ce_log_of_softmax(x, y):
    probs = (x - x.max(dim=-1, keepdim=True).values).exp()
    probs = probs / probs.sum(dim=-1, keepdim=True)
    return -probs[torch.arange(len(y)), y].log().mean()


def ce_all_classes(x, y):
    return -log_softmax(x).mean()


def ce_wrong_dim(x, y):
    return -(x - x.logsumexp(dim=0, keepdim=True))[torch.arange(len(y)), y].mean()


def ce_swapped(x, y):
    return -log_softmax(x)[y, torch.arange(len(y))].mean()


@pytest.mark.parametrize("answer, words", [
    (ce_block, ["(N, N) block", "torch.arange(N)"]),
    (ce_no_minus, ["sign", "NEGATIVE"]),
    (ce_sum, ["sum", "mean"]),
    (ce_per_example, ["per-example", "mean"]),
    (ce_probabilities, ["probabilities", "log"]),
    (ce_raw_logits, ["raw logits", "log-softmax"]),
    (ce_log_of_softmax, ["log(0)", "log-softmax"]),
    (ce_all_classes, ["every class", "true class"]),
    (ce_wrong_dim, ["wrong dim", "dim=-1"]),
    (ce_swapped, ["rows and columns swapped", "ce_swapped"]),
    (lambda x, y: "0.5", ["expected a number"]),
    (lambda x, y: mlp.cross_entropy(x, y) + 0.1, ["4 examples, 5 classes", "larger than the reference"]),
])
def test_cross_entropy_rejects(answer, words) -> None:
    result = mlp.check_cross_entropy(answer, quiet=True)
    assert result.status == "failed"
    for word in words:
        assert word in result.message, result.message


@pytest.mark.parametrize("mistake", mlp.CROSS_ENTROPY_MISTAKES, ids=lambda m: m.name)
def test_cross_entropy_names_each_mistake(mistake) -> None:
    result = mlp.check_cross_entropy(mistake.compute, quiet=True)
    assert result.status == "failed" and result.message == mistake.hint


@pytest.mark.parametrize("answer", [
    lambda x, y: mlp.cross_entropy(x.double(), y),
    lambda x, y: mlp.cross_entropy(x, y).reshape(1),
    lambda x, y: -(x - x.logsumexp(dim=1, keepdim=True)).gather(1, y[:, None]).mean(),
])
def test_cross_entropy_accepts_valid_alternatives(answer) -> None:
    assert mlp.check_cross_entropy(answer, quiet=True).passed


@pytest.mark.parametrize("answer", [
    lambda x, y: mlp.cross_entropy(x, y).detach(),
    lambda x, y: mlp.cross_entropy(x.detach(), y),
    lambda x, y: torch.tensor(mlp.cross_entropy(x, y).item()),
    lambda x, y: np.float32(mlp.cross_entropy(x, y).item()),
    lambda x, y: np.float64(-np.mean(log_softmax(x.detach().double()).numpy()[np.arange(len(y)), y.numpy()])),
])
def test_cross_entropy_rejects_a_loss_without_gradients(answer) -> None:
    result = mlp.check_cross_entropy(answer, quiet=True)
    assert result.status == "failed"
    assert "autograd" in result.message or "no gradient" in result.message, result.message
    assert "expected a number" not in result.message


def test_cross_entropy_rejects_changing_the_logits_in_place() -> None:
    def in_place(logits, labels):
        logits -= logits.max(dim=-1, keepdim=True).values
        return mlp.cross_entropy(logits, labels)

    result = mlp.check_cross_entropy(in_place, quiet=True)
    assert result.status == "failed" and "changed its input `logits` in place" in result.message


def test_cross_entropy_rejects_a_hard_coded_answer() -> None:
    fixed = [(case.args, mlp.cross_entropy(*case.args)) for case in mlp.CROSS_ENTROPY_CASES]

    def hard_coded(logits, labels):
        return next((loss for (x, y), loss in fixed if x.shape == logits.shape and torch.equal(x, logits)), fixed[0][1])

    result = mlp.check_cross_entropy(hard_coded, quiet=True)
    assert result.status == "failed" and "a hidden case" in result.message


def test_cross_entropy_names_a_mistake_only_when_it_matches_every_case() -> None:
    def sign_on_the_first_case_only(logits, labels):
        if logits.shape == (4, 5):
            return -mlp.cross_entropy(logits, labels)
        return mlp.cross_entropy(logits, labels) * 2

    result = mlp.check_cross_entropy(sign_on_the_first_case_only, quiet=True)
    assert result.status == "failed" and "sign" not in result.message, result.message


def test_cross_entropy_hidden_cases_sometimes_have_logits_far_apart() -> None:
    generator = torch.Generator().manual_seed(0)
    scales = [float(mlp._hidden_logits(generator)[0][0].abs().max()) for _ in range(12)]
    assert min(scales) < 20 < 100 < max(scales)


# ---------------------------------------------------------------------------------------------
# Exercise 4: linear_backward
# ---------------------------------------------------------------------------------------------

def with_autograd(x, w, grad_out):
    x, w = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    b = torch.zeros(len(w), requires_grad=True)
    F.linear(x, w, b).backward(grad_out)
    return x.grad, w.grad, b.grad


def with_autograd_grad(x, w, grad_out):
    x, w = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    b = torch.zeros(len(w), requires_grad=True)
    return torch.autograd.grad((F.linear(x, w, b) * grad_out).sum(), (x, w, b))


def with_autograd_backward(x, w, grad_out):
    x, w = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    b = torch.zeros(len(w), requires_grad=True)
    torch.autograd.backward(F.linear(x, w, b), grad_out)
    return x.grad, w.grad, b.grad


@pytest.mark.parametrize("answer, words", [
    (with_autograd, ["`Tensor.backward`", "matrix products"]),
    (with_autograd_grad, ["`torch.autograd.grad`"]),
    (with_autograd_backward, ["`torch.autograd.backward`"]),
    (lambda x, w, g: (g @ w.T, g.T @ x, g.sum(0)), ["inner sizes do not match", "(N, D_out)"]),
    (lambda x, w, g: (g @ w, g.T @ x, g.sum(0, keepdim=True)), ["`grad_b`", "(2,)", "(1, 2)"]),
    (lambda x, w, g: (g @ w, g.T @ x + 0.01, g.sum(0)), ["x (4, 3), w (2, 3)", "`grad_w`", "differs"]),
    (lambda x, w, g: (g @ w, g.T @ x), ["three results"]),
    (lambda x, w, g: g @ w, ["three results"]),
    (lambda x, w, g: (x.T @ g, g @ w, g.sum(1)), ["`grad_x`", "shape"]),
])
def test_linear_backward_rejects(answer, words) -> None:
    result = mlp.check_linear_backward(answer, quiet=True)
    assert result.status == "failed"
    for word in words:
        assert word in result.message, result.message


@pytest.mark.parametrize("mistake", mlp.LINEAR_BACKWARD_MISTAKES, ids=lambda m: m.name)
def test_linear_backward_names_each_mistake(mistake) -> None:
    result = mlp.check_linear_backward(mistake.compute, quiet=True)
    assert result.status == "failed" and result.message == mistake.hint


@pytest.mark.parametrize("answer", [
    lambda x, w, g: [torch.einsum("no,oi->ni", g, w), torch.einsum("no,ni->oi", g, x), g.sum(dim=0)],
    lambda x, w, g: (torch.mm(g, w), torch.mm(g.t(), x), torch.ones(len(g)) @ g),
    lambda x, w, g: (g.double() @ w.double(), (x.T @ g).T, g.sum(dim=0)),
    lambda x, w, g: tuple(t.detach() for t in mlp.linear_backward(x, w, g)),
])
def test_linear_backward_accepts_valid_alternatives(answer) -> None:
    result = mlp.check_linear_backward(answer, quiet=True)
    assert result.passed, result.message


def test_linear_backward_hints_never_give_the_expected_values() -> None:
    x, w, g = mlp.LINEAR_BACKWARD_CASES[0].args
    result = mlp.check_linear_backward(lambda x, w, g: (g @ w, torch.zeros(len(w), x.shape[1]), g.sum(0)), quiet=True)
    assert result.status == "failed" and "`grad_w`" in result.message
    for value in (g.T @ x).flatten().tolist():
        assert f"{value:.6g}" not in result.message, result.message


def test_linear_backward_hidden_cases_have_three_different_sizes() -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):
        (x, w, g), _ = mlp._hidden_linear(generator)
        n, d_in, d_out = len(x), x.shape[1], len(w)
        assert len({n, d_in, d_out}) == 3 and w.shape == (d_out, d_in) and g.shape == (n, d_out)


# ---------------------------------------------------------------------------------------------
# Exercise 5: accuracy
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer, words", [
    (lambda x, y: (x.argmax(dim=0) == y).float().mean().item(), ["dim 0", "dim=1"]),
    (lambda x, y: (x.argmax(dim=1) == y).sum().item(), ["number of correct", "divide"]),
    (lambda x, y: (x.argmax(dim=1) == y).sum(), ["number of correct", "divide"]),
    (lambda x, y: x.argmax(dim=1) == y, ["True/False", ".float().mean()"]),
    (lambda x, y: (x.argmax(dim=1) == y).mean(), ["True/False", ".float()"]),
    (lambda x, y: 100 * (x.argmax(dim=1) == y).float().mean().item(), ["percentage"]),
    (lambda x, y: (x.argmax(dim=1) != y).float().mean().item(), ["error rate"]),
    (lambda x, y: (x.argmin(dim=1) == y).float().mean().item(), ["argmin", "argmax"]),
    (lambda x, y: (x.argmax() == y).float().mean().item(), ["without dim=", "argmax(dim=1)"]),
    (lambda x, y: (x.softmax(dim=1) == y).float().mean(dim=1), ["one number"]),
    (lambda x, y: "0.5", ["expected a number"]),
])
def test_accuracy_rejects(answer, words) -> None:
    result = mlp.check_accuracy(answer, quiet=True)
    assert result.status == "failed"
    for word in words:
        assert word in result.message, result.message


@pytest.mark.parametrize("mistake", mlp.ACCURACY_MISTAKES, ids=lambda m: m.name)
def test_accuracy_names_each_mistake(mistake) -> None:
    result = mlp.check_accuracy(mistake.compute, quiet=True)
    assert result.status == "failed" and result.message == mistake.hint


@pytest.mark.parametrize("answer", [
    lambda x, y: (x.argmax(dim=1) == y).float().mean(),
    lambda x, y: (x.argmax(dim=1) == y).double().mean().reshape(1),
    lambda x, y: np.float32(mlp.accuracy(x, y)),
    lambda x, y: np.mean(x.numpy().argmax(axis=1) == y.numpy()),
    lambda x, y: sum(int(p == t) for p, t in zip(x.argmax(dim=1).tolist(), y.tolist())) / len(y),
])
def test_accuracy_accepts_valid_alternatives(answer) -> None:
    assert mlp.check_accuracy(answer, quiet=True).passed


def test_accuracy_names_a_mistake_only_when_it_matches_every_case() -> None:
    first = mlp.ACCURACY_CASES[0].args
    argmin_on_the_first_case = (first[0].argmin(dim=1) == first[1]).float().mean().item()
    assert argmin_on_the_first_case != mlp.accuracy(*first)
    result = mlp.check_accuracy(lambda x, y: argmin_on_the_first_case, quiet=True)
    assert result.status == "failed" and "argmin" not in result.message, result.message


def test_accuracy_hints_never_give_the_expected_value() -> None:
    want = mlp.accuracy(*mlp.ACCURACY_CASES[0].args)
    result = mlp.check_accuracy(lambda x, y: 0.123, quiet=True)
    assert result.status == "failed" and f"{want:.6g}" not in result.message and "0.123" in result.message


def test_accuracy_rejects_changing_the_logits_in_place() -> None:
    def in_place(logits, labels):
        result = mlp.accuracy(logits, labels)
        logits.zero_()
        return result

    result = mlp.check_accuracy(in_place, quiet=True)
    assert result.status == "failed" and "changed its input `logits` in place" in result.message


def test_accuracy_rejects_a_hard_coded_answer() -> None:
    fixed = [(case.args[0].shape, mlp.accuracy(*case.args)) for case in mlp.ACCURACY_CASES]

    def hard_coded(logits, labels):
        return dict(fixed).get(logits.shape, fixed[0][1])

    result = mlp.check_accuracy(hard_coded, quiet=True)
    assert result.status == "failed" and "a hidden case" in result.message


def test_accuracy_hidden_cases_have_many_examples() -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):
        (logits, labels), _ = mlp._hidden_scores(generator)
        assert 20 <= len(logits) <= 60 and logits.shape[1] < len(logits) and labels.shape == (len(logits),)
        assert 0 < mlp.accuracy(logits, labels) < 1


# ---------------------------------------------------------------------------------------------
# Exercise 1: make_mlp
# ---------------------------------------------------------------------------------------------

def mlp_without_relu(hidden):
    widths = [784, *hidden, 10]
    return nn.Sequential(nn.Flatten(), *[nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])])


def mlp_without_flatten(hidden):
    return nn.Sequential(*list(mlp.make_mlp(hidden).children())[1:])


def mlp_relu_at_the_end(hidden):
    return nn.Sequential(mlp.make_mlp(hidden), nn.ReLU())


def mlp_softmax_at_the_end(hidden):
    return nn.Sequential(mlp.make_mlp(hidden), nn.Softmax(dim=-1))


def mlp_no_output_layer(hidden):
    return nn.Sequential(*list(mlp.make_mlp(hidden).children())[:-1]) if hidden else mlp.make_mlp(hidden)


def mlp_wrong_widths(hidden):
    return mlp.make_mlp([h * 2 for h in hidden])


def mlp_one_relu_only(hidden):
    layers = list(mlp.make_mlp(hidden).children())
    relus = [i for i, layer in enumerate(layers) if isinstance(layer, nn.ReLU)]
    return nn.Sequential(*[layer for i, layer in enumerate(layers) if i not in relus[1:]])


def mlp_no_bias(hidden):
    widths = [784, *hidden, 10]
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b, bias=False), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


@pytest.mark.parametrize("answer, words", [
    (mlp_without_relu, ["linear", "nn.ReLU()"]),
    (mlp_without_flatten, ["nn.Flatten()"]),
    (mlp_relu_at_the_end, ["ReLU after the last Linear"]),
    (mlp_softmax_at_the_end, ["probabilities", "logits"]),
    (mlp_no_output_layer, ["Linear layers", "found 1"]),
    (mlp_wrong_widths, ["784 -> 64 -> 10", "(784, 128)"]),
    (mlp_one_relu_only, ["1 non-linearities for 2 hidden layers"]),
    (mlp_no_bias, ["bias", "fewer"]),
    (lambda hidden: [nn.Linear(784, 10)], ["nn.Module"]),
])
def test_make_mlp_rejects(answer, words) -> None:
    result = mlp.check_make_mlp(answer, quiet=True)
    assert result.status == "failed"
    for word in words:
        assert word in result.message, result.message


class TwoLayerFunctional(nn.Module):
    """A valid alternative: the same layers, the ReLU from torch.nn.functional."""

    def __init__(self, hidden_sizes):
        super().__init__()
        widths = [784, *hidden_sizes, 10]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, images):
        x = images.flatten(1)
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


def mlp_with_dropout(hidden_sizes):
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip([784, *hidden_sizes], hidden_sizes):
        layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(0.1)]
    return nn.Sequential(*layers, nn.Linear(([784, *hidden_sizes])[-1], 10))


@pytest.mark.parametrize("answer", [TwoLayerFunctional, mlp_with_dropout])
def test_make_mlp_accepts_valid_alternatives(answer) -> None:
    result = mlp.check_make_mlp(answer, quiet=True)
    assert result.passed, result.message


def test_make_mlp_rejects_changing_hidden_sizes_in_place() -> None:
    def appends(hidden_sizes):
        hidden_sizes.append(10)
        return mlp.make_mlp(hidden_sizes[:-1])

    result = mlp.check_make_mlp(appends, quiet=True)
    assert result.status == "failed" and "changed its input `hidden_sizes` in place" in result.message


def test_make_mlp_rejects_the_library_mlp() -> None:
    from course_utils.models import MLP

    result = mlp.check_make_mlp(lambda hidden_sizes: MLP(hidden=tuple(hidden_sizes), dropout=0.0), quiet=True)
    assert result.status == "failed" and "MLP.__init__" in result.message


def test_make_mlp_rejects_a_hard_coded_answer() -> None:
    def hard_coded(hidden_sizes):
        return mlp.make_mlp(hidden_sizes if list(hidden_sizes) in mlp.MLP_SIZES else [64])

    result = mlp.check_make_mlp(hard_coded, quiet=True)
    assert result.status == "failed" and "a hidden case" in result.message


def test_make_mlp_names_the_learners_line_when_forward_fails() -> None:
    class Broken(nn.Module):
        def __init__(self, hidden_sizes):
            super().__init__()
            self.flatten, self.linear = nn.Flatten(), mlp.make_mlp(hidden_sizes)

        def forward(self, images):
            return self.linear(images).undefined_method()

    result = mlp.check_make_mlp(Broken, quiet=True)
    assert result.status == "failed" and "AttributeError" in result.message and "forward" in result.message
