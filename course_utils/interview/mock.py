"""A mock interview: N questions, one coding exercise and one bug, drawn with a seed, timed, and scored by the
checkers.

    interview = mock_interview(n_questions=5, seed=0)   # prints the questions, the function to write, the bug
    ...                                                  # the candidate answers aloud, writes, fixes
    interview.score(my_function, my_fixed_function)     # runs both checkers, prints the time and the score
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .bank import Question, load_questions, render_question
from .bugs import BUGS, Bug, check_bug
from .coding import CodingExercise, available, check_exercise


@dataclass
class MockInterview:
    """One drawn interview; ``started`` is the clock reading when it was drawn."""

    questions: list[Question]
    coding: CodingExercise
    bug: Bug
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def show(self) -> None:
        """Print the questions (without their answers), the function to write, and the buggy function."""
        print(f"Mock interview: {len(self.questions)} questions, 1 coding exercise, 1 bug. The clock is running.\n")
        for number, question in enumerate(self.questions, 1):
            print(f"{number}. {question.question}")
        print(f"\nCoding: write `{self.coding.name}` (its checker is `check_exercise({self.coding.name!r}, ...)`):\n")
        print(self.coding.stub())
        print(f"Bug ({self.bug.source}): fix this function.\n")
        print(self.bug.code())

    def score(self, coding_answer: Callable[..., Any], bug_fix: Callable[..., Any],
              seed: int | None = None) -> dict[str, Any]:
        """Check the two answers, print the elapsed time, the score and the model answers of the questions.

        Returns ``{"seconds", "passed", "checked", "verdicts"}``: ``passed`` of the ``checked`` exercises passed.
        """
        seconds = self.clock() - self.started
        verdicts = [check_exercise(self.coding.name, coding_answer, seed=seed), check_bug(self.bug.name, bug_fix)]
        passed = sum(result.passed for result in verdicts)
        print(f"\nTime: {seconds / 60:.1f} min. Checked exercises passed: {passed} / {len(verdicts)}. "
              "Now mark your spoken answers against the model answers:\n")
        for question in self.questions:
            print(render_question(question).replace("**", ""), end="\n\n")
        return {"seconds": seconds, "passed": passed, "checked": len(verdicts),
                "verdicts": [str(result) for result in verdicts]}


def mock_interview(n_questions: int = 5, seed: int = 0, show: bool = True,
                   clock: Callable[[], float] = time.monotonic) -> MockInterview:
    """Draw ``n_questions`` questions, one coding exercise (among those whose checker exists) and one bug.

    Raises:
        ValueError: ``n_questions`` is not between 1 and the number of questions in the bank.
    """
    questions = load_questions()
    if not 1 <= n_questions <= len(questions):
        raise ValueError(f"n_questions must be between 1 and {len(questions)}, got {n_questions}")
    draw = random.Random(seed)
    interview = MockInterview(draw.sample(questions, n_questions), draw.choice(available()),
                              BUGS[draw.choice(sorted(BUGS))], clock)
    if show:
        interview.show()
    return interview
