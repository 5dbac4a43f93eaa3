"""Delivery of signed dossier documents to the province's one-stop system: the outbox
(:mod:`.outbox`), its targets (:mod:`.targets`) and the worker that drives them (:mod:`.worker`).
The wire contract is :mod:`.contract` (``docs/handoff.md``)."""
