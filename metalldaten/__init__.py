"""Metall+Daten hub: the command line (its sub-commands assembled from every part) and the demo."""

__all__: list[str] = []
