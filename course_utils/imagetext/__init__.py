"""An image–text teaching dataset made from MNIST or Fashion-MNIST: seeded, deterministic, offline.

From an :class:`~course_utils.data.ImageSet` it builds four things, one submodule each:

1. :mod:`~course_utils.imagetext.attributes`: stroke thickness, slant, size, position and
   brightness measured from the pixels (:func:`measure_attributes`), cut into thirds on the
   training split and named in words (:class:`AttributeBins`).
2. :mod:`~course_utils.imagetext.captions`: captions such as "a thick, upright seven"
   (:func:`make_captions`), with held-out wordings for the test split; their vocabulary
   (:class:`CaptionVocab` and the special-token ids) is in :mod:`~course_utils.imagetext.vocab`.
3. :mod:`~course_utils.imagetext.questions`: one balanced yes/no question per image
   (:func:`make_questions`), which neither the image nor the question answers alone
   (:func:`majority_baselines`), and the oracle that answers them all (:func:`answer_question`).
4. :mod:`~course_utils.imagetext.reading`: reading comprehension on the captions alone, a caption and a
   yes/no question about it (:func:`make_caption_questions`), for fine-tuning a text model (notebook 07).

:mod:`~course_utils.imagetext.words` holds what captions and questions share: the class words,
"a" / "an", and cutting text into tokens. Every name is importable from ``course_utils.imagetext``.
"""
from .attributes import ATTRIBUTES, INK, MIN_SPREAD, WORDS, AttributeBins, measure_attributes
from .captions import TEMPLATES, TEST_TEMPLATES, TRAIN_TEMPLATES, CaptionSet, label_from_caption, make_captions
from .questions import (
    ATTRIBUTE_QUESTIONS,
    Question,
    QuestionSet,
    answer_question,
    answer_questions,
    majority_baselines,
    make_questions,
    question_pool,
)
from .reading import CaptionQuestions, make_caption_questions, named_levels, question_only_accuracy
from .vocab import BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK_ID, CaptionVocab
from .words import FASHION_WORDS, MNIST_WORDS, class_words, join_tokens, tokens

__all__ = [
    "ATTRIBUTES", "INK", "MIN_SPREAD", "WORDS", "AttributeBins", "measure_attributes",
    "TEMPLATES", "TEST_TEMPLATES", "TRAIN_TEMPLATES", "CaptionSet", "label_from_caption", "make_captions",
    "ATTRIBUTE_QUESTIONS", "Question", "QuestionSet", "answer_question", "majority_baselines", "make_questions",
    "question_pool", "answer_questions",
    "CaptionQuestions", "make_caption_questions", "named_levels", "question_only_accuracy",
    "BOS_ID", "EOS_ID", "PAD_ID", "SPECIALS", "UNK_ID", "CaptionVocab",
    "FASHION_WORDS", "MNIST_WORDS", "class_words", "join_tokens", "tokens",
]
