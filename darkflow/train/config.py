"""Typed training configuration (``models/*.yaml``); the ``model`` section maps 1:1 to the model class.

:class:`TrainCommandConfig` holds the options of ``darkflow train``: the event file, the run directory and the
model recipe (``recipe``: a name of ``models/`` or a YAML file, the ``--model`` flag) with overrides of its
sections. Its ``model``, ``standardize`` and ``training`` mappings hold only the keys to change; they are
applied on top of the recipe's sections, key by key (a value replaces the recipe's value whole, a mapping
such as ``flow_options`` included), so that ``--set model.latent=4`` or a config file with
``training: {epochs: 5}`` changes one key and keeps the others. The result, a :class:`TrainConfig`, is built
and validated when the command config is, and read through :attr:`TrainCommandConfig.train_config`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, PrivateAttr, model_validator

from darkflow.config import Count, FlowName, Fraction, Name, StrictModel

FinitePositive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
"""A config value that must be finite and above zero (a learning rate)."""
FiniteNonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""A config value that must be finite and zero or more (a weight decay, a noise level, a KL weight)."""
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
"""A random seed: what numpy and Lightning accept (0 to 2**32 - 1)."""


class VAEModel(StrictModel):
    """:class:`darkflow.models.vae.FlowVAE` options."""

    kind: Literal["vae"] = "vae"
    encoder: Literal["conv", "graph"] = "conv"
    latent: PositiveInt = 8
    context: NonNegativeInt = 16
    flow: FlowName = "none"
    flow_options: dict = {}
    reco_loss: Literal["mse", "chamfer", "gaussian", "probabilistic"] = "mse"
    beta: FiniteNonNegative = 1.0
    channels: Annotated[list[PositiveInt], Field(min_length=1)] = [32, 64]
    hidden: PositiveInt = 128
    hlf_input: bool = False
    default_score: Literal["total", "reco", "kl", "latent_nll", "combined"] = "total"


class DensityModel(StrictModel):
    """:class:`darkflow.models.density.FlowDensity` options: a flow density of the flattened event."""

    kind: Literal["density"] = "density"
    flow: FlowName = "maf"
    flow_options: dict = {}
    noise: FiniteNonNegative = 0.05


class HLFDensityModel(StrictModel):
    """:class:`darkflow.models.hlf_density.HLFFlowDensity` options: a flow density of the high-level features."""

    kind: Literal["hlf_density"] = "hlf_density"
    flow: FlowName = "maf"
    flow_options: dict = {}
    dequantize: bool = True


class SVDDModel(StrictModel):
    """:class:`darkflow.models.svdd.DeepSVDD` options: one-class Deep SVDD on the standardized event."""

    kind: Literal["svdd"] = "svdd"
    hidden: list[PositiveInt] = [128, 64]
    rep_dim: PositiveInt = 32
    hlf_input: bool = False
    eps: PositiveFloat = 0.1
    negative_slope: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.01


class Standardization(StrictModel):
    """:class:`darkflow.models.scaler.Standardizer` options."""

    phi: Literal["cossin", "wrap", "none"] = "cossin"
    log: list[str] = ["E", "pt", "mass"]
    rotate: Literal["none", "leading", "met"] = "none"
    reflect_eta: bool = False
    reflect_phi: bool = False


class Training(StrictModel):
    """Lightning trainer and optimisation options (counts of at least 1, a finite learning rate above 0)."""

    epochs: Count = 30
    batch_size: Count = 256
    learning_rate: FinitePositive = 1e-3
    weight_decay: FiniteNonNegative = 0.0
    val_fraction: Fraction = 0.2
    patience: NonNegativeInt = 5
    gradient_clip: FiniteNonNegative = 5.0
    seed: Seed = 1
    event_weights: Literal["use", "abs", "ignore"] = "use"
    num_workers: NonNegativeInt = 0
    in_memory: bool | None = None
    accelerator: str = "cpu"
    devices: Count = 1
    strategy: str = "auto"
    num_nodes: Count = 1
    kl_warmup: NonNegativeInt = 0
    flow_warmup: NonNegativeInt = 0


class IsolationForestConfig(StrictModel):
    """:class:`darkflow.models.isoforest.IsolationForestModel` options (scikit-learn's IsolationForest)."""

    kind: Literal["isoforest"] = "isoforest"
    n_estimators: PositiveInt = 200
    max_samples: PositiveInt = 256
    seed: Seed = 1


class TrainConfig(StrictModel):
    """A whole training run: the model, the standardization and the trainer."""

    model: Annotated[VAEModel | DensityModel | HLFDensityModel | SVDDModel | IsolationForestConfig,
                     Field(discriminator="kind")] = VAEModel()
    standardize: Standardization = Standardization()
    training: Training = Training()

    @model_validator(mode="after")
    def _warmups(self) -> TrainConfig:
        t = self.training
        warm = {k: v for k, v in (("kl_warmup", t.kl_warmup), ("flow_warmup", t.flow_warmup)) if v}
        if warm and self.model.kind != "vae":
            raise ValueError(f"the warm-up options (training.{', training.'.join(warm)}) apply to VAE models "
                             f"only, not to model.kind {self.model.kind!r}; set them to 0")
        if warm and max(warm.values()) >= t.epochs:
            # a warm-up as long as the run is shortened to epochs - 1: the best model is chosen after the warm-up,
            # and `--epochs 1` with the shipped defaults must still train
            short = {k: min(v, t.epochs - 1) for k, v in warm.items()}
            object.__setattr__(self, "training", t.model_copy(update=short))
        return self


def load_train_config(model: str, overrides: dict[str, Any]) -> TrainConfig:
    """A model config by name (``models/NAME.yaml``) or path, with dotted overrides."""
    from darkflow.config import load_config
    from darkflow.data_prep.builtin import MODEL_CONFIGS, resolve

    path = resolve("", model, label="model config", base=MODEL_CONFIGS)
    return load_config(TrainConfig, path, overrides)


SECTIONS = ("model", "standardize", "training")
"""The sections of a recipe a :class:`TrainCommandConfig` can override."""


class TrainCommandConfig(StrictModel):
    """Options of ``darkflow train``: the SM event file, the run directory, the recipe and its overrides."""

    data: Name
    out: Name
    recipe: Name = "convvae"
    resume: bool = False
    model: dict[str, Any] = {}
    standardize: dict[str, Any] = {}
    training: dict[str, Any] = {}
    _resolved: TrainConfig = PrivateAttr()

    @model_validator(mode="after")
    def _resolve(self) -> TrainCommandConfig:
        from darkflow.config import apply_overrides, read_yaml, section_overrides, validate
        from darkflow.data_prep.builtin import MODEL_CONFIGS, resolve

        overrides = section_overrides(self, SECTIONS)
        recipe = read_yaml(resolve("", self.recipe, label="model config", base=MODEL_CONFIGS), "model config")
        self._resolved = validate(TrainConfig, apply_overrides(recipe, overrides), f"model {self.recipe}")
        return self

    @property
    def train_config(self) -> TrainConfig:
        """The recipe with the overrides applied, validated."""
        return self._resolved
