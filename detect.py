"""``python detect.py``: the main job: every face of pictures, a video or a webcam, with its 68 keypoints or a filter.

The code is in ``pipeline/detect_cli.py``; ``--help`` lists the options."""
from pipeline.detect_cli import main

if __name__ == "__main__":
    raise SystemExit(main())
