"""Typed training configuration (``models/*.yaml``); the ``model`` section maps 1:1 to the model class."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from darkflow.config import FlowName, Fraction, StrictModel


class VAEModel(StrictModel):
    """:class:`darkflow.models.vae.FlowVAE` options."""

    kind: Literal["vae"] = "vae"
    encoder: Literal["conv", "graph"] = "conv"
    latent: int = 8
    context: int = 16
    flow: FlowName = "none"
    flow_options: dict = {}
    reco_loss: Literal["mse", "chamfer", "gaussian", "probabilistic"] = "mse"
    beta: float = 1.0
    channels: list[int] = [32, 64]
    hidden: int = 128
    hlf_input: bool = False
    default_score: Literal["total", "reco", "kl", "latent_nll", "combined"] = "total"


class DensityModel(StrictModel):
    """:class:`darkflow.models.density.FlowDensity` options: a flow density of the flattened event."""

    kind: Literal["density"] = "density"
    flow: FlowName = "maf"
    flow_options: dict = {}
    noise: float = 0.05


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
    """Lightning trainer and optimisation options."""

    epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    val_fraction: Fraction = 0.2
    patience: int = 5
    gradient_clip: float = 5.0
    seed: int = 1
    event_weights: Literal["use", "abs", "ignore"] = "use"
    num_workers: int = 0
    in_memory: bool | None = None
    accelerator: str = "cpu"
    devices: int = 1
    strategy: str = "auto"
    num_nodes: int = 1
    kl_warmup: NonNegativeInt = 0
    flow_warmup: NonNegativeInt = 0


class IsolationForestConfig(StrictModel):
    """:class:`darkflow.models.isoforest.IsolationForestModel` options (scikit-learn's IsolationForest)."""

    kind: Literal["isoforest"] = "isoforest"
    n_estimators: int = 200
    max_samples: int = 256
    seed: int = 1


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
