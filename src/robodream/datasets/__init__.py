"""Datasets: the Zarr episode store (writer, reader, repair), window sampling, normalisation stats,
and video/GIF export."""
