"""Notebook 09's interview material: the question bank (counts, every source question, answers, links, figures),
the coding round, the bug round (each bug's check accepts the fix and reports the buggy version), the design
prompts, the mock interview and the glossary."""
from __future__ import annotations

import inspect
import json
import re
import time
from pathlib import Path

import nbformat
import pytest
import torch
from learner_answers import stub
from torch import nn
from torch.nn import functional as F

from course_utils import interview
from course_utils.interview import bank, coding
from course_utils.interview.bugs import BUGS, _train_right, check_bug
from course_utils.results import HEADLINE

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "09_interview_prep.ipynb"
QUESTIONS = interview.load_questions()

# ---------------------------------------------------------------------------------------------
# The question bank
# ---------------------------------------------------------------------------------------------


def test_the_bank_holds_at_least_80_questions_every_topic_and_every_source_question_once():
    assert len(QUESTIONS) >= 80
    sources = [q.source for q in QUESTIONS if q.source is not None]
    assert sorted(sources) == list(bank.SOURCE_QUESTIONS), "each source question 1-35 exactly once"
    for topic in interview.TOPICS:
        assert sum(q.topic == topic for q in QUESTIONS) >= 5, topic


def test_no_question_lacks_an_answer_and_every_correction_has_its_claim():
    for q in QUESTIONS:
        assert q.question.strip() and len(q.answer.split()) >= 8, q.id
        assert (q.source_claim is None) == (q.correction is None), q.id
    claims = " ".join(q.source_claim or "" for q in QUESTIONS)
    for wrong in ("accuracy and recall", "reduces the number of parameters", "hand-designed features",
                  "motion autoencoder", "adapters add no parameters", "Flatten -> Dense -> Dense"):
        assert wrong in claims, wrong


def test_every_link_resolves_to_a_heading_of_an_existing_notebook():
    linked = [q for q in QUESTIONS if q.link]
    assert len(linked) >= 60
    for q in linked:
        file, heading = bank.resolve_link(q.link)
        assert (REPO / "notebooks" / file).exists() and heading in bank.headings(file[:-6]), q.id


def test_every_figure_in_the_bank_is_a_recorded_metric():
    texts = [t for q in QUESTIONS for t in (q.answer, q.source_claim or "", q.correction or "")]
    texts += [d.answer for d in interview.load_designs()]
    cited = [m for t in texts for m in bank.FIGURE.finditer(t)]
    assert len(cited) >= 15
    for text in texts:
        assert "[[" not in bank.fill_figures(text)


def test_figures_print_accuracies_as_percentages_and_counts_as_integers():
    metrics = json.loads((REPO / "results" / "02_mnist_cnn.json").read_text())["metrics"]
    assert bank.figure("02_mnist_cnn", "mnist_test_acc") == f"{100 * metrics['mnist_test_acc']:.1f}%"
    assert bank.figure("04_bert_image_text", "fpt_steps") == "80"
    with pytest.raises(KeyError, match="no metric 'nope'"):
        bank.figure("02_mnist_cnn", "nope")


@pytest.mark.parametrize("link, message", [
    ("02_mnist_cnn 3. Pooling", "expected '<notebook stem>#<heading text>'"),
    ("99_missing#Summary", "no notebook"),
    ("02_mnist_cnn#3. Pooling", "has no heading '3. Pooling'"),
])
def test_a_broken_link_is_a_clear_error(link, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        bank.resolve_link(link)


@pytest.mark.parametrize("question, message", [
    ({"id": "a", "topic": "cnn", "question": "q"}, "question 'a'"),
    ({"id": "a", "topic": "nope", "question": "q", "answer": "a"}, "has topic 'nope'"),
    ({"id": "a", "topic": "cnn", "question": "q", "answer": "a", "source_claim": "x"}, "both source_claim"),
    ({"id": "a", "topic": "cnn", "question": "q", "answer": "a", "extra": 1}, "question 'a'"),
])
def test_a_malformed_bank_is_refused_with_the_question_named(tmp_path, monkeypatch, question, message):
    path = tmp_path / "bank.json"
    path.write_text(json.dumps({"questions": [question], "designs": []}))
    monkeypatch.setattr(bank, "BANK", path)
    with pytest.raises(ValueError, match=re.escape(message)):
        bank.load_questions()


def test_duplicate_ids_are_refused(tmp_path, monkeypatch):
    q = {"id": "a", "topic": "cnn", "question": "q", "answer": "a"}
    path = tmp_path / "bank.json"
    path.write_text(json.dumps({"questions": [q, q], "designs": []}))
    monkeypatch.setattr(bank, "BANK", path)
    with pytest.raises(ValueError, match="two questions have the id 'a'"):
        bank.load_questions()


def test_rendering_shows_the_correction_and_the_link_and_can_hide_the_answer():
    q = next(q for q in QUESTIONS if q.source == 10)
    text = interview.render_question(q)
    assert "*The source says:*" in text and "precision and recall" in text
    hidden = interview.render_question(next(q for q in QUESTIONS if q.link), collapsed=True)
    assert hidden.startswith("<details><summary>") and "](0" in hidden and hidden.endswith("</details>")
    assert interview.render_topic("cnn").startswith("#### Convolutional networks (")
    with pytest.raises(ValueError, match="unknown topic 'cnns'"):
        interview.render_topic("cnns")


def test_the_design_prompts_have_a_full_rubric_and_a_model_answer_citing_notebooks():
    designs = interview.load_designs()
    assert len(designs) >= 2
    for design in designs:
        rubric = " ".join(design.rubric).lower()
        for point in ("requirements", "data", "model choice", "metrics", "serving cost", "failure modes"):
            assert point in rubric, (design.id, point)
        assert re.search(r"0[2-7] (§|')", design.answer), design.id
        assert "### " in interview.render_design(design)


# ---------------------------------------------------------------------------------------------
# The coding round
# ---------------------------------------------------------------------------------------------


def test_the_coding_round_has_at_least_20_checked_exercises_with_resolving_links():
    exercises = interview.available()
    assert len(exercises) >= 20 and len({e.name for e in exercises}) == len(exercises)
    for exercise in exercises:
        if exercise.link:
            bank.resolve_link(exercise.link)
        assert exercise.stub().startswith(f"def {exercise.name}(")
    assert interview.coding_table().count("\n| `") == len(exercises)


def test_check_exercise_runs_the_checker_and_names_unknown_or_missing_ones(capsys):
    info = coding.find("max_pool").info()
    assert interview.check_exercise("max_pool", info.solution, quiet=True).passed
    assert interview.check_exercise("max_pool", stub).status == "not attempted"
    assert capsys.readouterr().out.startswith("TODO max_pool")
    with pytest.raises(KeyError, match="no coding exercise 'maxpool'"):
        coding.find("maxpool")
    missing = coding.CodingExercise("no_such_module", "x")
    assert missing.info() is None
    with pytest.raises(LookupError):
        missing.stub()


def test_the_notebook_stubs_have_the_signatures_of_the_checkers():
    """A stub cell of 09 must take the arguments its checker passes (the checkers' model answers define them)."""
    source = "\n".join(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code")
    stubs = dict(re.findall(r"^def (\w+)\(([^)]*)\)", source, flags=re.M))
    checked = [e for e in interview.available() if e.name in stubs]
    assert len(checked) >= 14
    for exercise in checked:
        mine = [p.split(":")[0].strip() for p in stubs[exercise.name].split(",") if p.strip()]
        assert mine == list(inspect.signature(exercise.info().solution).parameters), exercise.name


# ---------------------------------------------------------------------------------------------
# The bug round
# ---------------------------------------------------------------------------------------------


def _cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 14 * 14, 10))


def _bert_inputs(images, patch_proj):
    patches = images.unfold(2, 7, 7).unfold(3, 7, 7).reshape(images.shape[0], 16, 49)
    return {"inputs_embeds": patch_proj(patches)}


def _processor(folder):
    from transformers import AutoImageProcessor
    return AutoImageProcessor.from_pretrained(folder)


def _predict(model, images):
    model.eval()
    with torch.no_grad():
        return model(images).argmax(dim=1)


_train_linear = _train_right  # the fixed training loop: zero_grad before every backward


def _standardise(train, test):
    mean, std = train.mean(dim=0), train.std(dim=0, unbiased=False)
    return (train - mean) / std, (test - mean) / std


FIXES = {
    "flatten_dense_cnn": _cnn,
    "pixels_as_token_ids": _bert_inputs,
    "token_classification_head": lambda hidden, head: head(hidden[:, 0]),
    "transformers_adamw": lambda model, lr: torch.optim.AdamW(model.parameters(), lr=lr),
    "fusion_softmax_hidden": lambda i, t, head: torch.softmax(head(torch.cat([i, t], dim=-1)), dim=-1),
    "vit_feature_extractor": _processor,
    "missing_id2label": lambda logits, id2label: id2label[int(logits.argmax())],
    "double_sigmoid": F.binary_cross_entropy_with_logits,
    "label2id_fallback": lambda labels, label2id: [label2id[label] for label in labels],
    "metrics_wrong_axis": lambda logits: logits.argmax(dim=-1),
    "forgot_eval": _predict,
    "zero_grad_missing": _train_linear,
    "softmax_before_cross_entropy": lambda logits, labels: F.cross_entropy(logits, labels),
    "normalisation_leak": _standardise,
    "label_in_the_input": lambda caption, label: caption,
}

WRONG_FIXES = {  # a change that removes the symptom the check looks for first, but not the bug
    "token_classification_head": lambda hidden, head: head(hidden).sum(dim=1),
    "fusion_softmax_hidden": lambda i, t, head: torch.softmax(head(torch.cat([t, i], dim=-1)), dim=-1),
    "missing_id2label": lambda logits, id2label: id2label[int(logits.argmin())],
    "double_sigmoid": lambda z, y: F.binary_cross_entropy_with_logits(z, y, reduction="sum"),
    "label2id_fallback": lambda labels, label2id: [label2id.get(label, -1) for label in labels],
    "metrics_wrong_axis": lambda logits: logits.argmax(dim=-1).flip(0),
    "normalisation_leak": lambda train, test: (train - train.mean(0), test - train.mean(0)),
    "label_in_the_input": lambda caption, label: "",
    "transformers_adamw": lambda model, lr: torch.optim.Adam(model.parameters(), lr=lr),
}


def test_there_are_at_least_ten_bugs_and_every_one_has_a_fix_here():
    assert len(BUGS) >= 10 and set(FIXES) == set(BUGS)


@pytest.mark.parametrize("name", sorted(BUGS))
def test_the_buggy_version_is_todo_with_its_hint_and_the_fix_passes_quickly(name, capsys):
    check_bug(name, FIXES[name], quiet=True)  # warm up (the first transformers import takes seconds)
    result = check_bug(name, BUGS[name].buggy)
    assert result.status == "not attempted" and BUGS[name].hint in result.message
    assert capsys.readouterr().out.startswith(f"TODO bug {name}: not fixed yet")
    start = time.monotonic()
    result = check_bug(name, FIXES[name], quiet=True)
    assert result.passed, result.message
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize("name", sorted(WRONG_FIXES))
def test_a_wrong_fix_fails_with_a_hint(name):
    result = check_bug(name, WRONG_FIXES[name], quiet=True)
    assert result.status == "failed" and "Traceback" not in result.message, result.message


def test_a_stub_an_error_and_an_unknown_bug_are_reported():
    assert check_bug("double_sigmoid", stub, quiet=True).status == "not attempted"

    def broken(logits, targets):
        return logits.no_such_method()

    message = check_bug("double_sigmoid", broken, quiet=True).message
    assert "AttributeError" in message and "in `broken`" in message
    with pytest.raises(KeyError, match="no bug 'nope'"):
        check_bug("nope", stub)


def test_the_notebook_shows_each_buggy_function_as_it_is_checked():
    sources = [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    for bug in BUGS.values():
        assert any(s.startswith(bug.code().rstrip()) and f'check_bug("{bug.name}"' in s for s in sources), bug.name


# ---------------------------------------------------------------------------------------------
# The mock interview
# ---------------------------------------------------------------------------------------------


def fake_clock(step: float = 90.0):
    now = [0.0]

    def clock() -> float:
        now[0] += step
        return now[0]
    return clock


def test_the_mock_interview_is_seeded_and_scores_stubs_to_the_end(capsys):
    first = interview.mock_interview(4, seed=3, clock=fake_clock())
    again = interview.mock_interview(4, seed=3, show=False)
    assert [q.id for q in first.questions] == [q.id for q in again.questions]
    assert (first.coding, first.bug) == (again.coding, again.bug)
    shown = capsys.readouterr().out
    assert "1. " in shown and f"def {first.coding.name}(" in shown and first.bug.code() in shown
    score = first.score(stub, stub)
    out = capsys.readouterr().out
    assert score["passed"] == 0 and score["checked"] == 2 and score["seconds"] == 90.0
    assert "Time: 1.5 min. Checked exercises passed: 0 / 2" in out and "A. " in out


def test_the_mock_interview_counts_correct_answers():
    mock = interview.mock_interview(2, seed=5, show=False)
    score = mock.score(mock.coding.info().solution, FIXES[mock.bug.name])
    assert score["passed"] == 2, score["verdicts"]
    with pytest.raises(ValueError, match="n_questions must be between 1 and"):
        interview.mock_interview(0)


# ---------------------------------------------------------------------------------------------
# The glossary and the results
# ---------------------------------------------------------------------------------------------


def test_the_glossary_has_100_terms_with_every_column_filled_and_the_corrections():
    rows = interview.glossary_rows()
    assert len(rows) >= 100 and len({r[0].lower() for r in rows}) == len(rows)
    assert all(all(cell for cell in row) for row in rows)
    assert all(re.search(r"[\u4e00-\u9fff]", chinese) for english, chinese, _, _ in rows if english != "VisualBERT")
    by_term = {r[0]: r for r in rows}
    assert "多层感知机" in by_term["multilayer perceptron (MLP)"][1]
    assert by_term["accuracy"][1] == "准确率" and by_term["precision"][1].startswith("精确率")
    text = interview.GLOSSARY.read_text(encoding="utf-8")
    assert "not** an RNN" in text


def test_a_glossary_without_the_table_is_refused(tmp_path):
    path = tmp_path / "glossary.md"
    path.write_text("# Glossary\n\n| English | Chinese |\n|---|---|\n")
    with pytest.raises(ValueError, match="no table with the columns"):
        interview.glossary_rows(path)
    path.write_text("| English | 中文 | Meaning | Where in the course |\n|---|---|---|---|\n| a | b | c |\n")
    with pytest.raises(ValueError, match="has 3 cells, expected 4"):
        interview.glossary_rows(path)


def test_the_notebook_records_the_counts_the_issue_asks_for():
    assert HEADLINE["09_interview_prep"] == ["questions", "coding_exercises", "bug_exercises", "design_prompts",
                                            "glossary_terms"]
    record = json.loads((REPO / "results" / "09_interview_prep.json").read_text())["metrics"]
    assert record["questions"] >= 80 and record["coding_exercises"] >= 20 and record["bug_exercises"] >= 10
    assert record["design_prompts"] >= 2 and record["glossary_terms"] >= 100
