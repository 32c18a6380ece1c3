"""Checkers for notebook 09's search exercises, with the model answers they are tested against.

- :func:`check_knn_predict`: a k-nearest-neighbour classifier (Euclidean distance, majority vote);
- :func:`check_beam_step`: one step of beam search: extend every beam by every token, keep the best ``K``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from . import Case, Mistake, check_cases, exercise, hidden_cases

__all__ = ["solution_knn_predict", "solution_beam_step", "check_knn_predict", "check_beam_step"]


# ---------------------------------------------------------------------------------------------
# k-nearest neighbours
# ---------------------------------------------------------------------------------------------


def _vote(labels: Tensor) -> Tensor:
    """The most frequent label of each row of ``(M, k)`` int labels, ties to the smaller label -> ``(M,)``."""
    return torch.stack([torch.bincount(row).argmax() for row in labels])


def _knn(train_x: Tensor, train_y: Tensor, query: Tensor, k: int, distance: Tensor | None = None,
         largest: bool = False) -> Tensor:
    """The vote of the ``k`` training points with the smallest (or largest) ``distance`` ``(M, N)``."""
    distance = torch.cdist(query, train_x) if distance is None else distance
    nearest = distance.topk(k, dim=1, largest=largest).indices
    return _vote(train_y[nearest])


def solution_knn_predict(train_x: Tensor, train_y: Tensor, query: Tensor, k: int) -> Tensor:
    """Label each query by a majority vote of its ``k`` nearest training points (Euclidean distance); a tied vote
    goes to the smaller label (as ``torch.mode`` and scikit-learn do). train_x ``(N, D)``, train_y ``(N,)`` int64,
    query ``(M, D)`` -> ``(M,)`` int64."""
    distance = ((query[:, None, :] - train_x[None, :, :]) ** 2).sum(-1)  # (M, N), squared: same order
    nearest = distance.argsort(dim=1)[:, :k]
    return torch.stack([torch.bincount(row).argmax() for row in train_y[nearest]])


KNN_MISTAKES: tuple[Mistake, ...] = (
    Mistake("farthest points", lambda x, y, q, k: _knn(x, y, q, k, largest=True),
            "you vote among the k FARTHEST points: sort the distances ascending (or topk with largest=False)"),
    Mistake("nearest point only", lambda x, y, q, k: _knn(x, y, q, 1),
            "your result is the label of the single nearest point: vote among the k nearest"),
    Mistake("dot product as the distance", lambda x, y, q, k: _knn(x, y, q, k, distance=-(q @ x.T)),
            "you rank by dot product, which favours long vectors: this exercise uses the Euclidean distance"),
    Mistake("the most common label overall", lambda x, y, q, k: _vote(y.expand(len(q), -1)),
            "every query gets the most common training label: take the vote among each query's own k neighbours"),
    Mistake("ties to the larger label", lambda x, y, q, k: torch.stack(
        [len(c) - 1 - c.flip(0).argmax() for c in map(torch.bincount, y[torch.cdist(q, x).topk(k, 1, False).indices])]),
            "your tied votes go to the larger label: the exercise breaks ties towards the smaller label"),
)


def _knn_case(generator: torch.Generator, n: int, m: int, d: int, classes: int, k: int) -> tuple[tuple, str]:
    """``classes`` Gaussian blobs in ``d`` dimensions; queries drawn near them."""
    centres = torch.randn(classes, d, generator=generator) * 2
    train_y = torch.randint(0, classes, (n,), generator=generator)
    train_x = centres[train_y] + torch.randn(n, d, generator=generator)
    query = centres[torch.randint(0, classes, (m,), generator=generator)] + 1.5 * torch.randn(m, d, generator=generator)
    return (train_x, train_y, query, k), f"{n} training points in {d} dims, {classes} classes, {m} queries, k={k}"


KNN_CASES = (
    Case((torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [5.0, 5.0], [5.0, 6.0], [9.0, 9.0]]),
          torch.tensor([0, 0, 1, 1, 1, 2]), torch.tensor([[0.2, 0.2], [5.2, 5.4], [8.0, 8.0]]), 3),
     "6 training points in 2 dims, 3 queries, k=3"),
    Case(*_knn_case(torch.Generator().manual_seed(0), 30, 8, 3, 3, 5)),
    Case(*_knn_case(torch.Generator().manual_seed(1), 40, 10, 4, 4, 4)),  # an even k: some votes tie
)


def _hidden_knn(generator: torch.Generator) -> tuple[tuple, str]:
    n, m, classes = (int(torch.randint(lo, hi, (), generator=generator)) for lo, hi in ((20, 40), (5, 10), (2, 5)))
    k = int(torch.randint(3, 8, (), generator=generator))
    return _knn_case(generator, n, m, 3, classes, k)


@exercise("knn_predict", solution=solution_knn_predict, hidden=2, mistakes=KNN_MISTAKES)
def check_knn_predict(answer: Callable[[Tensor, Tensor, Tensor, int], Tensor]) -> None:
    """Check ``answer(train_x (N, D), train_y (N,), query (M, D), k)`` -> ``(M,)`` predicted labels."""
    check_cases(answer, [*KNN_CASES, *hidden_cases(_hidden_knn, 2)], solution_knn_predict, mistakes=KNN_MISTAKES)


# ---------------------------------------------------------------------------------------------
# One step of beam search
# ---------------------------------------------------------------------------------------------


def solution_beam_step(log_probs: Tensor, beam_scores: Tensor, beam_width: int) -> tuple[Tensor, Tensor, Tensor]:
    """One beam-search step: every beam ``b`` extended by every token ``t`` scores ``beam_scores[b] +
    log_probs[b, t]``; keep the ``beam_width`` best of all ``B * V`` candidates, best first.

    log_probs ``(B, V)``: each beam's next-token log-probabilities; beam_scores ``(B,)``: the beams' summed
    log-probabilities so far. Returns ``(scores (K,), parents (K,) int64, tokens (K,) int64)``: each kept
    candidate's total score, the beam it extends and its new token.
    """
    vocab = log_probs.shape[1]
    total = (beam_scores[:, None] + log_probs).flatten()
    scores, flat = total.topk(beam_width)
    return scores, flat // vocab, flat % vocab


def _split(total: Tensor, k: int, vocab: int, swap: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    scores, flat = total.flatten().topk(k)
    parents, tokens = flat // vocab, flat % vocab
    return (scores, tokens, parents) if swap else (scores, parents, tokens)


def _one_child_per_beam(lp: Tensor, s: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    best, tokens = (s[:, None] + lp).max(dim=1)
    order = best.argsort(descending=True)[:k]
    return best[order], order, tokens[order]


BEAM_MISTAKES: tuple[Mistake, ...] = (
    Mistake("beam scores not added", lambda lp, s, k: (lambda r: (r[0] + s[r[1]], r[1], r[2]))(
        _split(lp, k, lp.shape[1])),
            "you rank the candidates by the new token's log-probability alone: a candidate's score is its beam's "
            "score plus that log-probability (log-probabilities of a sequence add up)"),
    Mistake("parent and token swapped", lambda lp, s, k: _split(s[:, None] + lp, k, lp.shape[1], swap=True),
            "your parents and tokens are swapped: in the flattened (B * V) index, index // V is the beam and "
            "index % V the token"),
    Mistake("one child per beam", _one_child_per_beam,
            "you keep each beam's single best continuation: the best K candidates may all extend the same beam, so "
            "take the top K over all B * V candidates at once"),
    Mistake("probabilities multiplied, not logs", lambda lp, s, k: _split(s[:, None] * lp, k, lp.shape[1]),
            "you multiply the log-probabilities: logs of probabilities ADD (the log of a product is a sum of logs)"),
)


def _beam_case(generator: torch.Generator, beams: int, vocab: int, k: int) -> tuple[tuple, str]:
    log_probs = torch.log_softmax(torch.randn(beams, vocab, generator=generator) * 2, dim=1)
    beam_scores = -torch.rand(beams, generator=generator) * 4
    return (log_probs, beam_scores, k), f"{beams} beams, a vocabulary of {vocab}, beam_width={k}"


BEAM_CASES = (
    Case((torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])), torch.tensor([-0.1, -3.0]), 2),
         "2 beams of scores -0.1 and -3.0, a vocabulary of 3, beam_width=2"),
    Case(*_beam_case(torch.Generator().manual_seed(0), 3, 7, 3)),
    Case(*_beam_case(torch.Generator().manual_seed(1), 4, 10, 4)),
)


def _hidden_beam(generator: torch.Generator) -> tuple[tuple, str]:
    beams = int(torch.randint(2, 5, (), generator=generator))
    return _beam_case(generator, beams, int(torch.randint(5, 12, (), generator=generator)), beams)


@exercise("beam_step", solution=solution_beam_step, hidden=2, mistakes=BEAM_MISTAKES)
def check_beam_step(answer: Callable[[Tensor, Tensor, int], tuple[Tensor, Tensor, Tensor]]) -> None:
    """Check ``answer(log_probs (B, V), beam_scores (B,), beam_width)`` -> (scores, parents, tokens), best first."""
    check_cases(answer, [*BEAM_CASES, *hidden_cases(_hidden_beam, 2)], solution_beam_step, mistakes=BEAM_MISTAKES)
