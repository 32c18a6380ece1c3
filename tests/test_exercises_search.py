"""The search checkers of notebook 09 (k-NN, a beam-search step): the model answers agree with simple
references, valid alternatives pass, a stub is "not attempted", each typical mistake gets its hint.
The reference, a stub and every named mistake are run for every checker in tests/test_exercises_rules.py."""
from __future__ import annotations

from collections import Counter

import pytest
import torch
from learner_answers import rejects

from course_utils.exercises import CHECKERS
from course_utils.exercises import search as ex

INFOS = {info.name: info for info in CHECKERS if info.module == ex.__name__}
NAMES = ["knn_predict", "beam_step"]


def test_the_registry_lists_the_two_search_checkers():
    assert list(INFOS) == NAMES
    assert all(i.hidden >= 2 and len(i.mistakes) >= 4 for i in INFOS.values())


def test_knn_votes_and_breaks_ties_towards_the_smaller_label():
    train_x, train_y, query, k = ex.KNN_CASES[0].args
    assert ex.solution_knn_predict(train_x, train_y, query, k).tolist() == [0, 1, 1]
    tie = ex.solution_knn_predict(torch.tensor([[0.0], [1.0]]), torch.tensor([3, 1]), torch.tensor([[0.4]]), 2)
    assert tie.tolist() == [1]
    (x, y, q, k) = ex.KNN_CASES[2].args  # the even-k case holds a tied vote
    assert not torch.equal(ex.solution_knn_predict(x, y, q, k), ex.KNN_MISTAKES[-1].compute(x, y, q, k))


def test_beam_step_matches_a_brute_force_search():
    log_probs, beam_scores, k = ex.BEAM_CASES[1].args
    candidates = sorted(((float(beam_scores[b] + log_probs[b, t]), b, t) for b in range(log_probs.shape[0])
                         for t in range(log_probs.shape[1])), reverse=True)[:k]
    scores, parents, tokens = ex.solution_beam_step(log_probs, beam_scores, k)
    assert [(b, t) for _, b, t in candidates] == list(zip(parents.tolist(), tokens.tolist()))
    torch.testing.assert_close(scores, torch.tensor([s for s, _, _ in candidates]))


@pytest.mark.parametrize("name, answer", [
    ("knn_predict", lambda x, y, q, k: torch.tensor([min(Counter(r).items(), key=lambda c: (-c[1], c[0]))[0] for r in
                                                     y[torch.cdist(q, x).topk(k, largest=False).indices].tolist()])),
    ("knn_predict", lambda x, y, q, k: ex.solution_knn_predict(x.double(), y, q.double(), k)),
    ("beam_step", lambda lp, s, k: (lambda t: (t[0].double(), t[1], t[2]))(ex.solution_beam_step(lp, s, k))),
])
def test_valid_alternatives_pass(name, answer):
    result = INFOS[name].checker(answer, quiet=True)
    assert result.passed, result.message


@pytest.mark.parametrize("name, answer, words", [
    ("knn_predict", lambda x, y, q, k: ex.solution_knn_predict(x, y, q, k).float() + 1, ["differs"]),
    ("knn_predict", lambda x, y, q, k: ex.solution_knn_predict(x, y, q, k)[:1], ["expected shape"]),
    ("beam_step", lambda lp, s, k: ex.solution_beam_step(lp, s, k)[:2], ["expected 3 results"]),
    ("beam_step", lambda lp, s, k: tuple(t.flip(0) for t in ex.solution_beam_step(lp, s, k)), ["differs"]),
])
def test_wrong_answers_fail(name, answer, words):
    assert "Traceback" not in rejects(INFOS[name].checker, answer, *words)
