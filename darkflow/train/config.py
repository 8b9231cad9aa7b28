"""Typed training configuration (``models/*.yaml``); the ``model`` section maps 1:1 to the model class."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

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


class DensityModel(StrictModel):
    """:class:`darkflow.models.density.FlowDensity` options: a flow density of the flattened event."""

    kind: Literal["density"] = "density"
    flow: FlowName = "maf"
    flow_options: dict = {}
    noise: float = 0.05


class Standardization(StrictModel):
    """:class:`darkflow.models.scaler.Standardizer` options."""

    phi: Literal["cossin", "wrap", "none"] = "cossin"
    log: list[str] = ["E", "pt", "mass"]


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


class IsolationForestConfig(StrictModel):
    """:class:`darkflow.models.isoforest.IsolationForestModel` options (scikit-learn's IsolationForest)."""

    kind: Literal["isoforest"] = "isoforest"
    n_estimators: int = 200
    max_samples: int = 256
    seed: int = 1


class TrainConfig(StrictModel):
    """A whole training run: the model, the standardization and the trainer."""

    model: Annotated[VAEModel | DensityModel | IsolationForestConfig, Field(discriminator="kind")] = VAEModel()
    standardize: Standardization = Standardization()
    training: Training = Training()


def load_train_config(model: str, overrides: dict[str, Any]) -> TrainConfig:
    """A model config by name (``models/NAME.yaml``) or path, with dotted overrides."""
    from darkflow.config import load_config
    from darkflow.data_prep.builtin import MODEL_CONFIGS, resolve

    path = resolve("", model, label="model config", base=MODEL_CONFIGS)
    return load_config(TrainConfig, path, overrides)
