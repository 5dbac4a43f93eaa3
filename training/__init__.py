"""Training the on-device document-type classifier (issue 4). Never installed on a device.

- :mod:`training.generator`: renders fictitious Vietnamese administrative documents of every
  class (deterministic by seed) and degrades them as scanners and cameras do; also reused by the
  kiosk's fake camera and pipeline tests.
- :mod:`training.dataset`: builds the training / held-out arrays, adding the real pages in
  ``../shared/data/dev`` that fit a class, with a real held-out split.
- :mod:`training.train`: ``python -m training.train`` (``make model``) trains, converts to an
  int8 ``.tflite``, evaluates the converted model and writes ``device/models/``.
"""
