"""Digitization progress against the directive's targets: administrative units, targets,
dossiers received, rates rolled up the tree, and the periodic report ("Báo cáo định kỳ")."""
