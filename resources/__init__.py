"""What the course's own modules build on: the dataset's download and the face filters' artwork.

``download`` fetches and verifies the course dataset (``python -m resources.download``); ``artwork`` draws the
filters' pictures into ``images/`` from code; ``onnx_model`` runs a saved keypoint model with ONNX Runtime
alone, without PyTorch (the light install, ``requirements-light.txt``), and holds what ``models`` shares with it;
``files`` hashes files and writes them atomically.
Nothing here imports the rest of the project, so anything may import it: the modules students edit (``data_load``, ``filters``), ``pipeline/``, ``course/``, the tests and benchmarks.
"""
