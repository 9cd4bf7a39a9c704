"""The keypoint pipeline and its parts: any picture -> every face -> 68 keypoints.

``keypoint_pipeline`` (``KeypointPipeline``: the default path), ``learned_crops`` (how a learned detection is cut,
and cut again), ``haar_search`` (the cascades' searches, ``WiderSearch``), ``faces`` (``Face`` and the geometry the
searches share), ``tracking`` (``FaceTracker``: video), ``inference`` (the network on face crops), ``evaluation``
(metrics; ``python evaluate.py``), ``training`` (what notebook 2's training uses besides the students' code),
``explain`` (feature maps, Grad-CAM, occlusion), ``data_300w`` and ``no_faces`` (data readers),
``detect_cli`` (``python detect.py``) and ``web_app`` (``python app.py``). ``trainer`` (the shipped models' presets
and loop, ``python train.py``) and ``detector_training`` stay out of the students' release.

It imports ``resources/``, the modules at the root (``data_load``, ``models``, ``filters``) and
``detector_architectures/``; ``course/``, the entry scripts at the root, the notebooks, tests and benchmarks import
it. Nothing in it imports ``course/``.
"""
