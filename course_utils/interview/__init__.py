"""Notebook 09's interview preparation: the question bank, the coding round, the bug round, design prompts and a
mock interview.

- :mod:`.bank`: the questions and design prompts of ``bank.json`` (one data file), figures filled in from
  ``results/``, links resolved to notebook headings, Markdown rendering;
- :mod:`.coding`: the course's exercise checkers gathered as a coding round (``check_exercise``);
- :mod:`.bugs`: buggy functions and behavioural checks of the candidate's fix (``check_bug``);
- :mod:`.mock`: ``mock_interview``, a seeded, timed draw scored by the checkers;
- :mod:`.glossary`: the rows of ``docs/glossary.md``, the English-Chinese glossary.
"""
from .bank import (
    TOPICS,
    Design,
    Markdown,
    Question,
    fill_figures,
    load_designs,
    load_questions,
    render_design,
    render_question,
    render_topic,
    resolve_link,
)
from .bugs import BUGS, Bug, check_bug
from .coding import CODING, CodingExercise, available, check_exercise, coding_table
from .glossary import GLOSSARY, glossary_rows
from .mock import MockInterview, mock_interview

__all__ = ["BUGS", "CODING", "GLOSSARY", "TOPICS", "Bug", "CodingExercise", "Design", "Markdown", "MockInterview",
           "Question", "available", "check_bug", "check_exercise", "coding_table", "fill_figures", "glossary_rows",
           "load_designs", "load_questions", "mock_interview", "render_design", "render_question", "render_topic",
           "resolve_link"]
