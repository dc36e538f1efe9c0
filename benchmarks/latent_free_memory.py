"""Training memory of a ReActNet-style BNN under ste, reste, bop and binsfo (issue 15, item 3).

    python -m binarena.benchmarks.latent_free_memory --out DIR [--batch-sizes 32 128]

The catalog's ``cnn`` with RPReLU activations (ReActNet's), every eligible layer binary (the
stem, the classifier and the 1x1 shortcuts stay real, as in ReActNet), SGD with momentum for the
real-valued parameters. For each binary optimizer, one training step is counted by component
(``binarena.train_memory.training_memory``) and measured at its peak (``peak_memory``: the CPU
allocator's events, or CUDA's ``max_memory_allocated`` with ``--device cuda``), and both are
put relative to ReSTE's as Table I of the BinSFO paper does. The inputs are random tensors of the
data set's shape: memory depends on shapes, not values. Writes ``latent_free_memory.json`` and
``.md``; prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Literal

OPTIMIZERS: tuple[Literal["ste", "reste", "bop", "binsfo"], ...] = ("ste", "reste", "bop", "binsfo")
TARGET = 35.0  # % of ReSTE's weight + optimizer memory BinSFO may take (the target)
COMPONENTS = ("weights", "latent", "optimizer", "gradients", "activations", "binarized")

log = logging.getLogger(__name__)


def react_cnn(input_shape: tuple[int, ...], num_classes: int, channels: tuple[int, ...],
              blocks: int) -> Any:
    """The catalog's cnn with RPReLU, made switchable, its eligible layers binary."""
    import torch

    from binarena.b2nn import default_eligible, make_switchable, set_binary
    from binarena.models.catalog import cnn

    torch.manual_seed(0)
    model = make_switchable(cnn(input_shape, num_classes, activation="rprelu",
                                channels=channels, blocks_per_stage=blocks))
    set_binary(model, default_eligible(model))
    return model


def measure(input_shape: tuple[int, ...], num_classes: int, channels: tuple[int, ...],
            blocks: int, batch_size: int, device: str) -> list[dict[str, Any]]:
    """One row per binary optimizer: components, total, peak (bytes) and the shares of ReSTE's."""
    import torch

    from binarena.suite import TrainingSpec
    from binarena.train_memory import peak_memory, training_memory, training_setup

    generator = torch.Generator().manual_seed(0)
    batch = (torch.randn(batch_size, *input_shape, generator=generator).to(device),
             torch.randint(0, num_classes, (batch_size,), generator=generator).to(device))
    rows = []
    for optimizer in OPTIMIZERS:
        model = react_cnn(input_shape, num_classes, channels, blocks).to(device)
        schedule = TrainingSpec(binary_optimizer=optimizer, lr=0.01, batch_size=batch_size)
        with training_setup(model, schedule) as opt:
            counted = training_memory(model, opt, batch)
        peak = peak_memory(model, schedule, batch, device=device)
        row = {"method": optimizer, "batch_size": batch_size,
               **{name: getattr(counted, name) for name in COMPONENTS},
               "weight_memory": counted.weight_memory,
               "weight_and_optimizer": counted.weight_and_optimizer,
               "total": counted.total, "peak": peak}
        log.info("%s, batch %d: total %d B, peak %d B", optimizer, batch_size, counted.total, peak)
        rows.append(row)
    reste = next(r for r in rows if r["method"] == "reste")
    for row in rows:
        for key in ("total", "weight_and_optimizer", "peak"):
            row[f"{key}_pct_of_reste"] = 100.0 * row[key] / reste[key]
    return rows


def target_verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether BinSFO's weight + optimizer memory is at most 35 % of ReSTE's, per batch size
    (it does not depend on the batch; the activations do)."""
    shares = [r["weight_and_optimizer_pct_of_reste"] for r in rows if r["method"] == "binsfo"]
    return {"target_pct": TARGET, "binsfo_pct": max(shares), "holds": max(shares) <= TARGET}


def kib(n: int) -> str:
    return f"{n / 1024:,.1f}"


def markdown(report: dict[str, Any]) -> str:
    setup = report["setup"]
    lines = [
        f"cnn {setup['channels']} x {setup['blocks']} blocks, RPReLU, input "
        f"{setup['input_shape']}, {setup['binary_weights']:,} binary weights in "
        f"{setup['binary_layers']} layers, {setup['real_parameters']:,} real-valued parameters; "
        f"{report['environment']['device']} ({report['device']}, {setup['threads']} threads), torch "
        f"{report['environment']['torch']}. KiB; % of ReSTE's.",
        "",
        "| Optimizer | Batch | Weights | Latent | Optimizer | Gradients | Activations "
        "(binarized w.) | Total | Peak | Total % | Weight + opt. % | Peak % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['method']} | {r['batch_size']} | {kib(r['weights'])} | {kib(r['latent'])} | "
            f"{kib(r['optimizer'])} | {kib(r['gradients'])} | {kib(r['activations'])} "
            f"({kib(r['binarized'])}) | {kib(r['total'])} | {kib(r['peak'])} | "
            f"{r['total_pct_of_reste']:.1f} | {r['weight_and_optimizer_pct_of_reste']:.1f} | "
            f"{r['peak_pct_of_reste']:.1f} |")
    verdict = report["target"]
    lines += ["", f"Target (BinSFO's weight + optimizer memory at most {verdict['target_pct']:.0f} % "
              f"of ReSTE's): {verdict['binsfo_pct']:.1f} %, "
              f"{'holds' if verdict['holds'] else 'does not hold'}."]
    return "\n".join(lines) + "\n"


def run(out: Path, input_shape: tuple[int, ...], num_classes: int, channels: tuple[int, ...],
        blocks: int, batch_sizes: list[int], device: str) -> dict[str, Any]:
    import torch

    from binarena.b2nn import binary_layers
    from binarena.benchmarks.gpu_check import environment

    model = react_cnn(input_shape, num_classes, channels, blocks)
    binary = [model.get_submodule(name) for name in binary_layers(model)]
    binary_ids = {id(layer.weight) for layer in binary}
    setup = {"input_shape": list(input_shape), "num_classes": num_classes,
             "channels": list(channels), "blocks": blocks, "binary_layers": len(binary),
             "threads": torch.get_num_threads(),  # a CPU peak holds per-thread buffers
             "binary_weights": sum(layer.weight.numel() for layer in binary),
             "real_parameters": sum(p.numel() for p in model.parameters()
                                    if id(p) not in binary_ids)}
    rows = [row for size in batch_sizes
            for row in measure(input_shape, num_classes, channels, blocks, size, device)]
    report = {"setup": setup, "device": device, "environment": environment(device),
              "rows": rows, "target": target_verdict(rows)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "latent_free_memory.json").write_text(json.dumps(report, indent=1))
    (out / "latent_free_memory.md").write_text(markdown(report))
    return report


def ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON and table")
    parser.add_argument("--input-shape", type=ints, default=(1, 28, 28),
                        help="C,H,W of the inputs (default MNIST's 1,28,28)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--channels", type=ints, default=(16, 32, 64),
                        help="the cnn's channels per stage")
    parser.add_argument("--blocks", type=int, default=2, help="residual blocks per stage")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("latent_free_memory: no CUDA device here; use --device cpu", file=sys.stderr)
        raise SystemExit(2)
    if min(args.batch_sizes) < 2 or len(args.input_shape) != 3 or args.classes < 2:
        print("latent_free_memory: batch sizes of 2 or more (batch norm), a C,H,W input shape "
              "and 2 or more classes", file=sys.stderr)
        raise SystemExit(2)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run(args.out, args.input_shape, args.classes, args.channels, args.blocks, args.batch_sizes,
        args.device)
    print((args.out / "latent_free_memory.md").read_text(), end="")


if __name__ == "__main__":
    main()
