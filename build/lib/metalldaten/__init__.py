"""Metall+Daten hub: the command line, the demo, shared configuration loading and the member register."""
