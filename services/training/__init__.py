"""The training service: labeled dataset versions in, servable models with lineage out."""
