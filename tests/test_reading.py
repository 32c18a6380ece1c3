"""course_utils.imagetext.reading: caption-question pairs, balanced per question, answered by the caption alone."""
from __future__ import annotations

import pytest
import torch

import course_utils as cu
from course_utils import imagetext
from course_utils.imagetext.reading import named_levels


@pytest.fixture(scope="module")
def setup():
    train, val = cu.load_mnist("train").split(0.1, seed=0)
    bins = imagetext.AttributeBins.fit(imagetext.measure_attributes(train.images))
    return train, val, bins


def test_pairs_are_answered_by_their_caption(setup):
    train, _, bins = setup
    qa = imagetext.make_caption_questions(train.take(400, seed=0), bins, "train", seed=0)
    pool = imagetext.question_pool(train.classes, bins.informative)
    words = imagetext.class_words(train.classes)
    assert len(qa) == 400 and qa.split == "train"
    for caption, question, answer, k in zip(qa.captions, qa.questions, qa.answers.tolist(), qa.question_ids.tolist()):
        q = pool[k]
        assert question == q.text
        label = [i for i, w in enumerate(words) if w in imagetext.tokens(caption)]
        assert len(label) == 1
        if q.attribute is None:
            assert answer == int(label[0] in q.yes_labels)
        else:
            level = named_levels(caption, bins.informative)[q.attribute]
            assert level != 1 and answer == int(level == q.yes_level)


def test_answers_are_balanced_and_the_question_alone_is_chance(setup):
    train, val, bins = setup
    qa = imagetext.make_caption_questions(train.take(2000, seed=0), bins, "train", seed=0)
    held = imagetext.make_caption_questions(val.take(800, seed=0), bins, "test", seed=1)
    assert abs(qa.answers.float().mean().item() - 0.5) < 0.04
    assert abs(imagetext.question_only_accuracy(qa, held) - 0.5) < 0.06


def test_test_split_uses_held_out_wordings_and_templates(setup):
    _, val, bins = setup
    qa = imagetext.make_caption_questions(val.take(200, seed=0), bins, "test", seed=3)
    pool = imagetext.question_pool(val.classes, bins.informative)
    assert all(q == pool[k].held_out for q, k in zip(qa.questions, qa.question_ids.tolist()))
    train_wordings = {q.text for q in pool}
    assert not set(qa.questions) & train_wordings
    again = imagetext.make_caption_questions(val.take(200, seed=0), bins, "test", seed=3)
    assert again.captions == qa.captions and torch.equal(again.answers, qa.answers)


def test_bad_split_is_refused(setup):
    train, _, bins = setup
    with pytest.raises(ValueError, match="'train' or 'test'"):
        imagetext.make_caption_questions(train.take(10, seed=0), bins, "val")
