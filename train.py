"""``python train.py``: train a keypoint network (``--preset cpu``, ``full``, ``wild``, ...).

The code is in ``pipeline/trainer.py``; ``--help`` lists the options."""
from pipeline.trainer import main

if __name__ == "__main__":
    raise SystemExit(main())
