"""BeMi: structured ensembles of small BNNs trained by lexicographic MIPs (LION 2023); the method
is ``binarena.methods.bemi.method``, registered as "bemi"."""
