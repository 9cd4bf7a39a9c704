"""The course's machinery around the students' code: the checks after each ``TODO`` and the notebooks' helpers.

``checks`` says what is right and what is wrong after each ``TODO``; ``notebook_helpers`` sets up a notebook (Colab
included), plots, and holds the repository's address; ``handin`` packs a student's work into the one file they hand
in (the last cell of each notebook, or ``python -m course.handin``). The instructors' copy also keeps here the
commands that make the students' copy of the course and grade what students hand in.

It imports ``pipeline/``, the modules at the root and ``resources/``; only the notebooks, the tests and the
benchmarks import it.
"""
