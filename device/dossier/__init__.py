"""The dossier room: a counter's dossier from opening to hand-off.

- ``session.py``: the state machine both front ends drive (:class:`~device.dossier.session.DossierSession`).
- ``model.py``: what the session holds and reports (pages, views, closed dossiers, events).
- ``errors.py``: the session's errors and the fault codes a person sees.
- ``sources.py``: where pages come from (a scanner batch, a camera shot) and the page pipeline's seam.
- ``naming.py``: how a closed dossier's pages become documents and what each is called.
- ``pdf.py`` (over ``pdf_writer.py``): one document's PDF.
- ``sink.py``: the hand-off of a closed dossier to the outbox.
- ``config.py``: the ``session:`` and ``pdf:`` settings (imports none of the above).

Importing the package imports nothing heavy (no OpenCV, no PDF library).
"""
