"""What the course's own modules build on: the dataset's download and the face filters' artwork.

``download`` fetches and verifies the course dataset (``python -m resources.download``); ``artwork`` draws the
filters' pictures into ``images/`` from code. Nothing here imports the rest of the project, so anything may import
it: the modules students edit (``data_load``, ``filters``), ``pipeline/``, ``course/``, the tests and benchmarks.
"""
