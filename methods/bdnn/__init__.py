"""BDNNs (binary activations, real or integer weights in [-1, 1]) trained by mixed-integer
programming (Kurtz & Bah): the exact MILP, local search and k-means data splitting, robust
training; beside them the same architecture trained by gradients (STE) and a full-precision MLP.
Methods: ``bdnn-milp`` (``binarena.methods.bdnn.method``), ``bdnn-ste`` and ``bdnn-mlp``
(``binarena.methods.bdnn.gradient``)."""
