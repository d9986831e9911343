"""Firewall backends: each holds journalban's own chains or sets, nothing else."""
