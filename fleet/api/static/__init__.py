"""The web page (plain HTML and a little JavaScript, no build step)."""
