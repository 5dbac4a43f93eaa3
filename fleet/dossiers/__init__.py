"""The dossier registry: dossiers received and digitized, matched by code, and their documents."""
