"""Typed CFLOW-AD configuration (``models/cflow_*.yaml``), one section per constructor.

:class:`CflowTrainCommandConfig` holds the options of ``darkflow cflow train``: the images, the run directory and
the recipe (``model``: ``cflow_default``, another ``models/cflow_*.yaml`` or a YAML file) with overrides of
``image_size`` and of the ``encoder``, ``decoder`` and ``training`` sections. As for ``darkflow train``
(:mod:`darkflow.train.config`), each override replaces one key of the recipe and keeps the others.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, PrivateAttr, field_validator, model_validator

from darkflow.config import Count, FlowName, Fraction, Name, StrictModel, at_least_one, section_overrides


def _above_zero(what: str) -> AfterValidator:
    """A float field that must be a finite ``what`` above 0 (one message for every such option)."""

    def check(value: float) -> float:
        if not (0 < value < float("inf")):
            raise ValueError(f"must be a finite {what} above 0")
        return value

    return AfterValidator(check)


class EncoderConfig(StrictModel):
    """:func:`darkflow.cflow.encoders.build_encoder` options, plus the autoencoder pre-training."""

    name: Literal["builtin", "resnet18", "wide_resnet50_2"] = "builtin"
    weights: str = "imagenet"
    channels: list[int] = [32, 64, 128]
    resolution: Count = 64
    pretrain_steps: int = 0
    pretrain_lr: Annotated[float, _above_zero("learning rate")] = 1e-3

    @field_validator("pretrain_steps")
    @classmethod
    def _steps(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must be 0 (no pre-training) or more")
        return value

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[int]) -> list[int]:
        if not value or any(c < 2 for c in value):
            raise ValueError("needs one or more channel counts of at least 2")
        return value


class GaussianConfig(StrictModel):
    """:class:`darkflow.cflow.gaussian.GaussianFibers` options: the closed-form Gaussian of every scale's fibers.

    It is the whole ``mvg`` model (``decoder.flow: none``) and the whitening CFLOW-AD's decoders start from
    (``covariance: none``: no whitening, the decoders see the standardized features, as before version 0.2).
    """

    covariance: Literal["shared", "position", "none"] = "position"
    epsilon: Annotated[float, _above_zero("variance")] = 0.01



class DecoderConfig(StrictModel):
    """:func:`darkflow.cflow.decoder.build_decoders` options (``flow: none``: no decoder, the ``mvg`` model)."""

    flow: FlowName = "cflow-coupling"
    blocks: Count = 4
    clamp: Annotated[float, _above_zero("soft-clamp scale")] = 0.5
    pos_dim: int = 128
    flow_options: dict = {}

    @field_validator("pos_dim")
    @classmethod
    def _pos_dim(cls, value: int) -> int:
        if value < 4 or value % 4:
            raise ValueError("must be a positive multiple of 4")
        return value


class TrainingConfig(StrictModel):
    """Optimisation and trainer options."""

    epochs: int = 5
    fiber_batch: int = 4096
    fiber_fraction: Annotated[float, Field(gt=0, le=1)] = 0.25
    batch_size: int = 16
    learning_rate: Annotated[float, _above_zero("learning rate")] = 1e-3
    val_fraction: Fraction = 0.2
    seed: int = 1
    accelerator: str = "cpu"
    devices: int = 1
    precision: Literal["32", "bf16"] = "32"

    @field_validator("epochs", "fiber_batch", "batch_size", "devices")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value


class CflowConfig(StrictModel):
    """A CFLOW-AD run: the input size (image folders are resized to it; ``None`` keeps their size), encoder,
    Gaussian, decoders and training."""

    image_size: int | None = None
    encoder: EncoderConfig = EncoderConfig()
    gaussian: GaussianConfig = GaussianConfig()
    decoder: DecoderConfig = DecoderConfig()
    training: TrainingConfig = TrainingConfig()

    @field_validator("image_size")
    @classmethod
    def _size(cls, value: int | None) -> int | None:
        if value is not None and value < 8:
            raise ValueError("must be at least 8 pixels")
        return value

    @model_validator(mode="after")
    def _mvg(self) -> CflowConfig:
        if self.decoder.flow == "none" and self.gaussian.covariance == "none":
            raise ValueError("the mvg model (`decoder.flow` none) is the Gaussian alone: set `gaussian.covariance` "
                             "to shared or position")
        return self

    @property
    def is_mvg(self) -> bool:
        """True for the closed-form Gaussian model (no decoder to train)."""
        return self.decoder.flow == "none"


def load_cflow_config(model: str | None, overrides: dict[str, Any]) -> CflowConfig:
    """A CFLOW config by name (``models/cflow_NAME.yaml`` or ``models/NAME.yaml``) or path, with overrides."""
    from darkflow.config import load_config
    from darkflow.data_prep.builtin import MODEL_CONFIGS, resolve

    name = model or "cflow_default"
    if not name.endswith((".yaml", ".yml")) and "/" not in name and not name.startswith("cflow_"):
        name = f"cflow_{name}"
    path = resolve("", name, label="CFLOW config", base=MODEL_CONFIGS)
    return load_config(CflowConfig, path, overrides)


SECTIONS = ("encoder", "gaussian", "decoder", "training")
"""The sections of a CFLOW recipe a :class:`CflowTrainCommandConfig` can override."""


class CflowTrainCommandConfig(StrictModel):
    """Options of ``darkflow cflow train``: the normal images, the run directory, the recipe and its overrides."""

    data: Annotated[list[Name], at_least_one("give an image folder (MVTec AD layout) or .h5 file(s)")]
    out: Name
    model: Name = "cflow_default"
    image_size: int | None = None
    encoder: dict[str, Any] = {}
    gaussian: dict[str, Any] = {}
    decoder: dict[str, Any] = {}
    training: dict[str, Any] = {}
    _resolved: CflowConfig = PrivateAttr()

    @model_validator(mode="after")
    def _resolve(self) -> CflowTrainCommandConfig:
        overrides = section_overrides(self, SECTIONS)
        if self.image_size is not None:
            overrides["image_size"] = self.image_size
        self._resolved = load_cflow_config(self.model, overrides)
        return self

    @property
    def cflow_config(self) -> CflowConfig:
        """The recipe with the overrides applied, validated."""
        return self._resolved
