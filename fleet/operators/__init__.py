"""Counter operators: the clerks and postal staff who digitize dossiers at a unit's devices."""
