"""``python train.py``: train a keypoint network (``--preset cpu``, ``full``, ``wild``, ...).

The code is in ``pipeline/training.py``; ``--help`` lists the options."""
from pipeline.training import main

if __name__ == "__main__":
    raise SystemExit(main())
