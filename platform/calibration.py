"""The time of one training step, measured once per model, batch and device and stored, so that a
dry run can turn the steps it counts (``binarena.cost``) into an estimate of the wall time.

A step is timed through binarena's one training loop (``binarena.training.train``) on synthetic
tensors of the data set's input shape: no data is needed, and a step's time does not depend on
what the images hold. The model is the stage's full-precision network at the schedule's batch size,
augmentations, optimizer, precision and memory format; a B2NN's step (binary layers, a search's
fine-tunes) is taken to cost the same, and reading a file-based data set is not timed. A job that
reserves a GPU trains on CUDA; one that does not, on the CPU with as many threads as CPUs it
reserves (Ray sets ``OMP_NUM_THREADS`` so), hence the threads in a CPU step's key.

The store is one JSON file in binarena's cache folder (``calibration.json``): a list of entries,
each a key (what determines a step's time), the seconds per step, and the device that timed it. A
key timed again replaces its entry for that device; a dry run uses the latest entry of its key.
"""

from __future__ import annotations

import json
import logging
import math
import platform
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .registry import DATASETS
from .mlflow_store import cache_folder

if TYPE_CHECKING:
    from .jobs import Job

log = logging.getLogger(__name__)

STORE = "calibration.json"
WARMUP_STEPS = 3  # not timed: kernel selection, allocator growth, lazy initialisation
Device = Literal["cpu", "cuda"]


def store_path() -> Path:
    return cache_folder() / STORE


def job_device(job: Job) -> Device:
    """Where the stage trains: CUDA if it reserves a GPU (``RunContext.device``)."""
    return "cuda" if job.resources.gpus > 0 else "cpu"


def threads(job: Job) -> int:
    """CPU threads of the stage's torch: the CPUs it reserves, at least one."""
    return max(1, math.floor(job.resources.cpus))


def step_key(job: Job) -> dict[str, Any]:
    """What determines the time of the stage's training step on its device."""
    assert job.model is not None  # only stages that build a model train steps
    source = DATASETS.get(job.dataset.name)
    key: dict[str, Any] = {
        "model": job.model.model_dump(mode="json", exclude={"eligible"}),
        "input_shape": list(source.input_shape), "classes": source.num_classes,
        "batch_size": job.training.batch_size, "optimizer": job.training.optimizer,
        "augment": list(job.training.augment), "precision": job.training.precision,
        "channels_last": job.training.channels_last, "device": job_device(job),
    }
    if key["device"] == "cpu":
        key["threads"] = threads(job)
    return key


@dataclass(frozen=True)
class Calibration:
    """One measured step: its key, its time, and what measured it."""

    key: dict[str, Any]
    seconds: float  # per training step
    steps: int  # timed
    device_name: str  # e.g. "NVIDIA H200", or the CPU's name
    measured_at: str  # ISO 8601, UTC
    torch: str

    def describe(self) -> str:
        count = self.key.get("threads")
        on = self.device_name + (f", {count} thread{'s' * (count != 1)}" if count else "")
        precision = "" if self.key["precision"] == "fp32" else f" {self.key['precision']}"
        return f"{self.key['model']['name']} batch {self.key['batch_size']}{precision} on {on}"


class Calibrations:
    """The stored calibrations, looked up by stage."""

    def __init__(self, entries: list[Calibration]) -> None:
        self.entries = entries

    @classmethod
    def load(cls, path: Path | None = None) -> Calibrations:
        """The store's entries; an unreadable store is logged and read as empty."""
        path = path or store_path()
        if not path.is_file():
            return cls([])
        try:
            return cls([Calibration(**entry) for entry in json.loads(path.read_text())])
        except (OSError, ValueError, TypeError) as exc:
            log.warning("%s: not a calibration store (%s); ignored", path, exc)
            return cls([])

    def find(self, job: Job) -> Calibration | None:
        """The latest calibration of the stage's step, if any."""
        if job.model is None:
            return None
        key = step_key(job)
        matching = [c for c in self.entries if c.key == key]
        return max(matching, key=lambda c: c.measured_at) if matching else None

    def seconds(self, job: Job) -> float | None:
        found = self.find(job)
        return None if found is None else found.seconds

    def add(self, calibration: Calibration) -> None:
        """Keep ``calibration``, replacing the entry of the same key and device name."""
        self.entries = [c for c in self.entries
                        if (c.key, c.device_name) != (calibration.key, calibration.device_name)]
        self.entries.append(calibration)

    def save(self, path: Path | None = None) -> Path:
        from .results import atomic_write

        path = path or store_path()
        atomic_write(path, json.dumps([asdict(c) for c in self.entries], indent=1).encode())
        return path


def measure(job: Job, steps: int) -> Calibration:
    """Time ``steps`` training steps of the stage's model on its device, after a warm-up, on
    synthetic tensors (two batches of the data set's shape, random labels)."""
    import torch
    from torch.utils.data import TensorDataset

    from binarena.methods.base import build_model

    from .training import train

    device, key = job_device(job), step_key(job)
    source = DATASETS.get(job.dataset.name)
    batch = job.training.batch_size
    previous = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(key["threads"])
    try:
        model = build_model(job, source.input_shape, source.num_classes).to(device)
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(2 * batch, *source.input_shape, generator=generator)
        labels = torch.randint(0, source.num_classes, (2 * batch,), generator=generator)
        data = TensorDataset(images, labels)
        train(model, data, job.training, seed=0, device=device, steps=WARMUP_STEPS)
        timed = train(model, data, job.training, seed=1, device=device, steps=steps)
    finally:
        torch.set_num_threads(previous)
    name = torch.cuda.get_device_name() if device == "cuda" else cpu_name()
    return Calibration(key=key, seconds=timed.seconds / timed.steps, steps=timed.steps,
                       device_name=name, torch=torch.__version__,
                       measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def cpu_name() -> str:
    """The CPU's model name (Linux), else what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"
