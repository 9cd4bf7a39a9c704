"""``python app.py``: the web demo: any picture or the webcam, in the browser.

The code is in ``pipeline/web_app.py``; ``--help`` lists the options."""
from pipeline.web_app import main

if __name__ == "__main__":
    raise SystemExit(main())
