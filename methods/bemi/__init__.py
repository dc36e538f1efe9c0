"""BeMi: structured ensembles of small BNNs trained by lexicographic MIPs (LION 2023)."""

from binarena.methods.bemi.method import BeMi, load_network  # noqa: F401  (registers "bemi")
