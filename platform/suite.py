"""Suites: declarative YAML benchmark definitions, validated into typed, frozen objects.

A suite says what to run (dataset, model, methods with parameters, budgets, seeds, training
schedule, resources); ``binarena.jobs`` expands it into jobs. Every error a user can make is raised
as ``SuiteError`` naming the file and the field. Reading one imports the plug-ins it names and no
torch: that the model builds is checked when a run is planned (``binarena.orchestrator``).

The schema is strict (no "1" for 1, no true for 1; a whole number is accepted where a real one is
meant), refuses NaN and infinities, and bounds every number: a suite is read before anything runs,
so what would fail late, overflow a C library or run until killed is refused there, in one line.
"""

from __future__ import annotations

import inspect
import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, StrictBool, StrictFloat, StrictInt,
                      StrictStr, ValidationError, field_validator, model_validator)

from .errors import SuiteError
from .registry import DATASETS, METHODS, MODELS
from .suite_values import Problem, check_option, plain_value, ray_quantity
from .suite_yaml import read_yaml
from .validation import did_you_mean, first_error
from .words import as_written

BUNDLED_SUITES = "binarena.benchmarks.suites"

# Bounds, each with its reason. A suite over them is refused before anything is written.
SEED_MAX = 2_000_000_000  # Gurobi's Seed parameter stops there; HiGHS / CP-SAT take int32
MAX_NAME = 100  # a suite name is a folder and an MLflow experiment; a label an MLflow run name
MAX_DISPLAY_NAME = 250  # the generated ``name[k=v,...]``: MLflow run names, Ray task names
MAX_COUNT = 10**9  # images (train / test sizes): beyond ImageNet by 1000x, inside int64 maths
MAX_EPOCHS = 100_000  # 10**30 epochs runs until killed
MAX_BATCH = 1 << 20
MAX_LR = 100.0
MAX_CPUS, MAX_GPUS = 10_000, 1_000  # one job's reservation; more is a typo, never schedulable
MAX_WORKERS = 1_000  # one training's data-parallel workers: beyond any cluster binarena targets
MAX_JOBS = 10_000  # methods x budgets x seeds: planning and the dry run take ~30 s at 10,000
MAX_LIST = 1_000  # budgets, seeds, methods, milestones, tune choices
MAX_TRIALS, MAX_PARALLEL = 100_000, 10_000
MAX_PARAM_NUMBER = 10**9  # |x| of any number in a method's params: no int32 overflow downstream
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"  # names printed on one line, used as run names

MAX_RESTE_O = 100.0  # ReSTE's power o: its backward nears sign's own as o grows; papers use 3

LATENT_FREE = ("bop", "binsfo")  # binary optimizers that keep binary weights as bits, no floats
BINARY_OPTIMIZER_FIELDS = ("bop_threshold", "bop_gamma", "reste_o_max", "binsfo_eta")

ACTIVATION_NAMES = ("binrelu", "hardtanh", "identity", "relu", "rprelu")
"""``binarena.binary.ACTIVATIONS``' names, known here without torch (a test checks they agree)."""

Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
Count = Annotated[int, Field(gt=0, le=MAX_COUNT)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class DatasetSpec(_Spec):
    """Which data, and which fixed subsets of it (drawn with ``seed``, the same for every job)."""

    name: str
    root: str | None = Field(None, max_length=4096,
                             description="data root; --data-root and BINARENA_DATA win")
    download: bool = Field(False, description="let torchvision download what is missing")
    train_size: Count | None = Field(None, description="training images (default: all)")
    val_size: float = Field(0.1, ge=0, le=MAX_COUNT,
                            description="fraction (< 1) or count held out of training")
    test_size: Count | None = Field(None, description="test images (default: all)")
    seed: Seed = 0
    fingerprint: str | None = Field(
        None, description="a digest of the data's content, set by binarena from the files "
        "(binarena.orchestrator.make_plan), never written in a suite")

    @field_validator("fingerprint")
    @classmethod
    def _not_from_suites(cls, value: str | None) -> str | None:
        if value is not None:  # model_copy(update=...), binarena's way to set it, skips validators
            raise ValueError("is computed from the data's files; remove it from the suite")
        return value

    @field_validator("val_size")
    @classmethod
    def _whole_count(cls, value: float) -> float:
        if value >= 1 and not float(value).is_integer():
            raise ValueError(f"{value:g} is neither a fraction (< 1) nor a whole count of images")
        return value

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in DATASETS:
            raise ValueError(DATASETS.unknown_message(name))
        return name

    def identity(self) -> dict[str, Any]:
        """What determines the data a job sees (where it is stored does not)."""
        return self.model_dump(exclude={"root", "download"})


class ModelSpec(_Spec):
    """An architecture from the model registry, its options, and which layers may be binarized."""

    name: str
    activation: str = "binrelu"
    options: dict[str, Any] = Field(default_factory=dict)
    eligible: list[Annotated[str, Field(max_length=1000)]] | None = Field(
        None, max_length=10_000,
        description="layers a selection method may binarize (default: the model's rule)"
    )

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in MODELS:
            raise ValueError(MODELS.unknown_message(name))
        return name

    @model_validator(mode="after")
    def _known_options(self) -> ModelSpec:
        factory = MODELS.get(self.name)
        accepted = [
            p.name for p in inspect.signature(factory).parameters.values()
            if p.name not in {"input_shape", "num_classes", "activation"}
        ]
        unknown = sorted(set(self.options) - set(accepted))
        if unknown:
            raise ValueError(
                f"options: {unknown[0]!r} is not an option of model {self.name!r} "
                f"(options: {', '.join(accepted) or 'none'})"
            )
        for name, value in self.options.items():
            check_option(factory, name, value)
        return self

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, name: str) -> str:
        if name not in ACTIVATION_NAMES:
            raise ValueError(f"unknown activation {name!r} (known: {', '.join(ACTIVATION_NAMES)})")
        return name


class TrainingSpec(_Spec):
    """The training schedule; defaults are the MixBin paper's (section A)."""

    epochs: int = Field(160, gt=0, le=MAX_EPOCHS)
    batch_size: int = Field(128, gt=0, le=MAX_BATCH)
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.1, gt=0, le=MAX_LR)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0, le=1)
    label_smoothing: float = Field(0.01, ge=0, lt=1)
    milestones: list[float] = Field(
        default_factory=lambda: [0.5, 0.75], max_length=MAX_LIST,
        description="lr decay points, as fractions of epochs"
    )
    gamma: float = Field(0.1, gt=0, le=1)
    augment: list[Literal["random-crop", "horizontal-flip", "random-affine", "random-resized-crop"]] = (
        Field(default_factory=list, max_length=8,
              description="per-sample batch augmentations (binarena.augment)"))
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="the forward pass's arithmetic: fp32, or mixed precision under "
        "autocast (fp16 with a gradient scaler); weights stay fp32, evaluation runs in fp32. For "
        "GPUs: a CPU without bf16 / fp16 units runs both, several times slower than fp32")
    channels_last: bool = Field(
        False, description="keep the model's and the inputs' 4-D tensors channels-last (NHWC), "
        "faster convolutions on GPUs with tensor cores; the same result within rounding")
    binary_optimizer: Literal["ste", "bop", "reste", "binsfo"] = Field(
        "ste", description="how binary weights train (binarena.binary_optimizers): ste (latent "
        "float weights by `optimizer`, identity backward), reste (latent weights, ReSTE's "
        "power-law backward), bop or binsfo (no latent weights: the weights are bits, flipped by "
        "Bop's or BinSFO's rule); every real-valued parameter keeps `optimizer`")
    bop_threshold: float = Field(1e-8, ge=0, le=MAX_LR,
                                 description="Bop flips a weight w where w * momentum > this")
    bop_gamma: float = Field(1e-4, gt=0, le=1, description="Bop's adaptivity rate: momentum <- "
                             "momentum + gamma (gradient - momentum); decays with the lr")
    reste_o_max: float = Field(3.0, ge=1, le=MAX_RESTE_O, description="ReSTE's power o at the end "
                               "of training, rising from 1 linearly in the steps taken")
    binsfo_eta: float = Field(0.01, gt=0, le=MAX_LR, description="BinSFO's step eta: flip "
                              "probabilities erf(eta g / (sqrt 2 sigma)); decays with the lr")

    @field_validator("milestones")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if any(not 0 < m < 1 for m in value) or value != sorted(value):
            raise ValueError("milestones are increasing fractions of the epochs, each in (0, 1)")
        return value

    @model_validator(mode="after")
    def _fp16_needs_parameters(self) -> TrainingSpec:
        """fp16's gradient scaler unscales parameters' gradients; bits have none to unscale."""
        if self.precision == "fp16" and self.binary_optimizer in LATENT_FREE:
            raise Problem("precision", f"fp16 scales gradients that {self.binary_optimizer}'s "
                          "bits never see unscaled: use bf16 or fp32")
        return self

    def idle_fields(self) -> set[str]:
        """The hyper-parameters of the binary optimizers this schedule does not use: they change
        nothing it trains (job keys leave them out)."""
        return {name for name in BINARY_OPTIMIZER_FIELDS
                if not name.startswith(f"{self.binary_optimizer}_")}


class Resources(_Spec):
    """What one job reserves on the cluster; fractional GPUs let several jobs share one."""

    cpus: float = Field(1, gt=0, le=MAX_CPUS,
                        description="CPUs of the job; with workers > 1, of each worker")
    gpus: float = Field(0, ge=0, le=MAX_GPUS,
                        description="GPUs of the job; with workers > 1, of each worker")
    workers: int = Field(1, ge=1, le=MAX_WORKERS, description=(
        "data-parallel workers (Ray Train, DDP) that train the job's network together, each "
        "with the cpus and gpus above: the pre-training and the final training of a chosen B2NN"))

    @field_validator("cpus", "gpus")
    @classmethod
    def _ray_quantity(cls, value: float, info) -> float:
        """Ray's own rules, checked here so they fail before anything runs, not in a job."""
        return ray_quantity(value, gpu=info.field_name == "gpus")

    @model_validator(mode="after")
    def _whole_gpus_per_worker(self) -> Resources:
        """NCCL runs one worker per GPU: two sharing one fail when they first communicate."""
        if self.workers > 1 and not float(self.gpus).is_integer():
            raise Problem("gpus", f"{self.gpus:g}: with workers > 1, each worker takes whole GPUs "
                          "(NCCL runs one worker per GPU)")
        return self


class MethodSpec(_Spec):
    """One method of the suite with its parameters (validated by the method itself)."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = Field(None, min_length=1, max_length=MAX_NAME, pattern=NO_CONTROL,
                              description="leaderboard name (default: name[k=v,...])")
    resources: Resources | None = None
    training: dict[str, Any] = Field(default_factory=dict, description="overrides of the schedule")
    start: Literal["pretrained", "scratch"] = Field(
        "pretrained", description="the weights the method starts from: the suite's shared "
        "pre-training of the job's seed, or the seed's initialisation")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in METHODS:
            raise ValueError(METHODS.unknown_message(name))
        return name

    @model_validator(mode="after")
    def _validate_params(self) -> MethodSpec:
        try:
            plain_value(self.params, "params", limit=MAX_PARAM_NUMBER)
        except Problem as problem:  # worded like the Params model's own errors below
            raise ValueError(str(problem)) from None
        try:  # strict, through JSON: a list is a tuple's input there, "1" is no int
            params = METHODS.get(self.name).Params.model_validate_json(
                json.dumps(self.params), strict=True)
        except ValidationError as exc:
            raise ValueError(f"params.{first_error(exc, METHODS.get(self.name).Params)}") from None
        # Normalised (defaults filled in) so that the job key sees what actually runs.
        object.__setattr__(self, "params", params.model_dump(mode="json"))
        return self

    @property
    def uses_budget(self) -> bool:
        return METHODS.get(self.name).uses_budget

    @property
    def display_name(self) -> str:
        """benchopt-style deterministic name: the label, or ``name[k=v,...]`` for non-default params."""
        if self.label:
            return self.label
        fields = METHODS.get(self.name).Params.model_fields
        # a required parameter (no default) is always shown: it is what tells the rows apart
        defaults = {k: f.get_default(call_default_factory=True) for k, f in fields.items()
                    if not f.is_required()}
        defaults = json.loads(json.dumps(defaults, default=str))
        changed = {k: v for k, v in sorted(self.params.items())
                   if k not in defaults or defaults[k] != v}
        if not changed:
            return self.name
        return f"{self.name}[{','.join(f'{k}={v}' for k, v in changed.items())}]"


class Dimension(_Spec):
    """One searched setting: a range (``low``..``high``, ``integer``, ``log``) or ``choices``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    # What Optuna's categorical distributions hold.
    choices: list[StrictBool | StrictInt | StrictFloat | Annotated[StrictStr, Field(max_length=1000)]
                  | None] | None = Field(None, max_length=MAX_LIST)

    @property
    def empty(self) -> bool:
        return self.choices is None and self.low is None and self.high is None

    @model_validator(mode="after")
    def _one_kind(self) -> Dimension:
        if self.empty:
            return self  # only ``mask`` may be empty; TuneSpec checks
        if self.choices is not None:
            if self.low is not None or self.high is not None or not self.choices:
                raise ValueError("give either non-empty choices or low and high")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError("a range needs low < high")
        elif self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


TUNABLE_PREFIXES = ("params.", "training.")


class TuneSpec(_Spec):
    """What ``binarena tune`` searches: trials are jobs of ``method`` with settings from ``space``.

    ``space`` keys: ``budget``, ``params.<name>`` (the method's parameters), ``training.<name>``
    (the schedule), or ``mask`` (every eligible layer binary or not; the method is then
    ``given-layers``). Objectives: ``pareto`` (accuracy up, FLOPs % down: the Pareto front) or
    ``constrained`` (accuracy up, subject to FLOPs % <= ``max_flops``).
    """

    method: str = Field(max_length=MAX_NAME)
    space: dict[str, Dimension] = Field(min_length=1, max_length=MAX_LIST)
    objective: Literal["pareto", "constrained"] = "pareto"
    max_flops: float | None = Field(None, gt=0, le=100, description="FLOPs % allowed (constrained)")
    trials: int = Field(20, gt=0, le=MAX_TRIALS, description="trials the study should hold in the end")
    parallel: int | None = Field(None, gt=0, le=MAX_PARALLEL,
                                 description="trials at once (default: what the cluster holds)")
    sampler: Literal["tpe", "random", "nsga2"] = "tpe"
    seed: Seed = Field(0, description="the trials' job seed and the sampler's")
    storage: str | None = Field(None, max_length=4096, description="an Optuna storage URL, or "
                                "'journal' (default: SQLite in the suite's results folder)")

    @model_validator(mode="after")
    def _coherent(self) -> TuneSpec:
        for key, dim in self.space.items():
            if key not in ("budget", "mask") and not key.startswith(TUNABLE_PREFIXES):
                raise ValueError(f"space.{key}: searchable are budget, mask, params.<name> and "
                                 "training.<name>")
            if dim.empty and key != "mask":
                raise ValueError(f"space.{key}: give low and high, or choices")
        if ("mask" in self.space) != (self.method == "given-layers"):
            raise ValueError("space.mask goes with method given-layers, and only with it")
        if self.objective == "constrained" and self.max_flops is None:
            raise ValueError("max_flops: the constrained objective needs a FLOPs % limit")
        return self


class Suite(_Spec):
    """A benchmark: every method x budget x seed on one dataset and model."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=MAX_NAME)
    description: str = Field("", max_length=10_000)
    dataset: DatasetSpec
    model: ModelSpec | None = None
    methods: list[MethodSpec] = Field(min_length=1, max_length=MAX_LIST)
    budgets: list[float] = Field(default_factory=list, max_length=MAX_LIST,
                                 description="FLOPs % remaining")
    seeds: list[Seed] = Field(default_factory=lambda: [0, 1, 2], min_length=1, max_length=MAX_LIST,
                              description="three by default, as in the papers")
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    pretrain: dict[str, Any] = Field(
        default_factory=dict, description="overrides of `training` for the shared pre-training "
        "every method of a seed starts from (default: the same schedule)")
    pretrain_binary: bool = Field(
        False, description="pre-train a BNN: every eligible layer binary in the shared "
        "pre-training, trained by its schedule's binary_optimizer (ste unless `pretrain` says "
        "otherwise); default: full precision")
    pretrain_dataset: DatasetSpec | None = Field(
        None, description="the data the shared pre-training trains on (default: the suite's "
        "dataset), read from the same data root; same input shape and classes as the suite's: "
        "pre-train on one, fine-tune on the other (BinSFO's Table I)")
    resources: Resources = Field(default_factory=Resources)
    baseline: str = Field(
        "random", min_length=1, max_length=MAX_DISPLAY_NAME, pattern=NO_CONTROL,
        description="the leaderboard row every other is compared with, paired by seed: a "
        "method's name or leaderboard name (its label, or name[k=v,...])")
    tune: TuneSpec | None = Field(None, description="what `binarena tune` searches")
    _source: Path | None = PrivateAttr(None)  # the file it was read from, for error messages

    @property
    def source(self) -> str:
        return str(self._source) if self._source else self.name

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, value: list[float]) -> list[float]:
        for i, budget in enumerate(value):
            if not 0 < budget <= 100:
                raise ValueError(f"budget #{i + 1} is {as_written(budget)}: a budget is a FLOPs % "
                                 "in (0, 100]")
        if len(set(value)) != len(value):
            raise ValueError("budgets are listed twice")
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("seeds are listed twice")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Suite:
        jobs = len(self.methods) * max(1, len(self.budgets)) * len(self.seeds)
        if jobs > MAX_JOBS:
            raise ValueError(f"methods x budgets x seeds make {jobs:,} jobs; a suite holds at most "
                             f"{MAX_JOBS:,}: split it")
        names = [m.display_name for m in self.methods]
        for i, name in enumerate(names):
            if len(name) > MAX_DISPLAY_NAME:
                raise ValueError(f"methods[{i}]: its name {name[:40]}... is {len(name)} characters "
                                 f"long (at most {MAX_DISPLAY_NAME}): give it a short `label`")
        if len(set(names)) != len(names):
            raise ValueError("two methods share a name; give one a distinct `label`")
        if self.baseline != "random" and self.baseline not in {
                *names, *(m.name for m in self.methods)}:
            raise ValueError(f"baseline: {self.baseline!r} is not a method of the suite "
                             f"(its rows: {', '.join(names)})")
        if self.model is None:
            needy = [m.name for m in self.methods if METHODS.get(m.name).needs_model]
            if needy:
                raise ValueError(f"model: method {needy[0]!r} needs a model")
        if not self.budgets and any(m.uses_budget for m in self.methods):
            budgeted = next(m.name for m in self.methods if m.uses_budget)
            raise ValueError(f"budgets: method {budgeted!r} needs at least one budget")
        for i, method in enumerate(self.methods):
            for name, value in set_by_params(method).items():
                if method.training.get(name, value) != value:
                    raise ValueError(f"methods[{i}].training.{name}: {method.name}'s params set "
                                     f"it to {value!r}; remove one of the two")
            try:
                optimizer = self.training_for(method).binary_optimizer
            except ValidationError as exc:
                raise ValueError(f"methods[{i}].training: {first_error(exc, TrainingSpec)}"
                                 ) from None
            if optimizer in LATENT_FREE and self.resources_for(method).workers > 1:
                raise ValueError(f"methods[{i}]: {optimizer} trains bits on one worker (no "
                                 "gradients for DDP to average): resources.workers must be 1")
        try:
            self.pretraining
        except ValidationError as exc:
            raise ValueError(f"pretrain: {first_error(exc, TrainingSpec)}") from None
        self._check_pretraining_source()
        if self.tune is not None:
            if self.tune.method not in METHODS:
                raise ValueError(f"tune.method: {METHODS.unknown_message(self.tune.method)}")
            if METHODS.get(self.tune.method).needs_model and self.model is None:
                raise ValueError(f"model: tune.method {self.tune.method!r} needs a model")
            uses_budget = METHODS.get(self.tune.method).uses_budget
            if uses_budget and "budget" not in self.tune.space and not self.budgets:
                raise ValueError(f"tune.space: {self.tune.method!r} needs a budget: search it "
                                 "(space.budget) or list budgets")
            if not uses_budget and "budget" in self.tune.space:
                raise ValueError(f"tune.space.budget: {self.tune.method!r} takes no budget")
        return self

    def _check_pretraining_source(self) -> None:
        """A BNN pre-training needs a model; a source data set, a network the target can take."""
        source = self.pretrain_dataset
        if self.model is None and (self.pretrain_binary or source is not None):
            name = "pretrain_binary" if self.pretrain_binary else "pretrain_dataset"
            raise ValueError(f"{name}: the suite has no model to pre-train")
        if source is None:
            return
        if source.root is not None:
            raise ValueError("pretrain_dataset.root: the pre-training data is read from the "
                             "suite's data root (--data-root, BINARENA_DATA or dataset.root)")
        a, b = DATASETS.get(source.name), DATASETS.get(self.dataset.name)
        if (a.input_shape, a.num_classes) != (b.input_shape, b.num_classes):
            raise ValueError(
                f"pretrain_dataset: {source.name} ({'x'.join(map(str, a.input_shape))} inputs, "
                f"{a.num_classes} classes) cannot pre-train a network for {self.dataset.name} "
                f"({'x'.join(map(str, b.input_shape))} inputs, {b.num_classes} classes)")

    def training_for(self, method: MethodSpec) -> TrainingSpec:
        """The suite's schedule with the method's overrides applied, then the schedule fields
        its parameters set (``Method.training_overrides``: bnn-finetune's optimizer)."""
        return self._schedule_with({**method.training, **set_by_params(method)})

    @property
    def pretraining(self) -> TrainingSpec:
        """The schedule of the shared pre-training: the suite's, with ``pretrain``'s overrides."""
        return self._schedule_with(self.pretrain)

    def _schedule_with(self, overrides: dict[str, Any]) -> TrainingSpec:
        if not overrides:
            return self.training
        return TrainingSpec.model_validate({**self.training.model_dump(), **overrides})

    def resources_for(self, method: MethodSpec) -> Resources:
        return method.resources or self.resources


def set_by_params(method: MethodSpec) -> dict[str, Any]:
    """The schedule fields the method entry's parameters set (``Method.training_overrides``)."""
    return METHODS.get(method.name).training_overrides(method.params)


def bundled_suites() -> dict[str, Path]:
    """Suites shipped with binarena, by name."""
    folder = resources.files(BUNDLED_SUITES)
    return {
        entry.name.removesuffix(".yaml"): Path(str(entry))
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".yaml")
    }


def resolve_suite_path(ref: str) -> Path:
    """A path to a YAML file, or the name of a bundled suite."""
    path = Path(ref)
    if path.is_file():
        return path
    bundled = bundled_suites()
    if ref in bundled:
        return bundled[ref]
    if path.suffix in {".yaml", ".yml"} or "/" in ref:
        raise SuiteError(f"{ref}: no such suite file")
    hint = did_you_mean(ref, list(bundled)) or f" (bundled: {', '.join(bundled) or 'none'})"
    raise SuiteError(f"{ref}: not a file and not a bundled suite{hint}")


def load_suite(ref: str | Path) -> Suite:
    """Read and validate a suite; any problem becomes one ``SuiteError`` line naming file and field."""
    path = resolve_suite_path(str(ref))
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise SuiteError(f"{path}: a suite is a YAML mapping (dataset, model, methods, ...)")
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as exc:
        raise SuiteError(f"{path}: {first_error(exc, Suite)}") from None
    suite._source = path
    return suite
