"""BeMi: structured ensembles of small BNNs trained by lexicographic MIPs (LION 2023)."""

from binarena.searchers.bemi.method import BeMi, load_network  # noqa: F401  (registers "bemi")
