"""``python evaluate.py``: the model's errors on the course test faces or the held-out 300-W faces.

The code is in ``pipeline/evaluation.py``; ``--help`` lists the options."""
from pipeline.evaluation import main

if __name__ == "__main__":
    raise SystemExit(main())
