"""`cellmae demo`: the whole pipeline on the bundled synthetic screen."""
