"""Learning from clerks: the pages whose document type a clerk or citizen corrected on a device
(``doctype_corrected`` events), listed and exported as a training set (the page files plus
``labels.csv``) that ``python -m training.train --corrections DIR`` reads back.

The latest correction of a page wins. The export holds the page images and their labels only:
no dossier code, no names, no codes read from the page.
"""

from fleet.corrections.store import Correction, export_zip, labels_csv, latest_corrections

__all__ = ["Correction", "export_zip", "labels_csv", "latest_corrections"]
