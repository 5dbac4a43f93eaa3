"""The document-type model the project trains and ships (``python -m training.train``):
``doctype.tflite`` (int8), ``doctype_labels.txt``, ``doctype_version.txt`` and the training report.
Data files only; loaded by :mod:`device.inference.doctype`."""
