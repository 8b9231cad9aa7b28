"""``darkflow export --format onnx``: a trained VAE as an ONNX scorer for a trigger or inference service.

The exported graph takes the event file's arrays as they are stored (``objects`` float32 ``(N, R, F)``
raw, in GeV and radians, and ``mask`` bool ``(N, R)``), standardizes them inside the graph with the run's
fitted scaler, and returns the deterministic scores of ``darkflow score`` (posterior mean, ``sample=False``)
as outputs named after the run's scores (``total``, ``reco``, ``kl``, ``latent_nll``, ``combined``), each
float32 ``(N,)``. A model trained with ``model.hlf_input`` takes a third input, ``hlf`` float32 ``(N, K)``, the
file's raw ``hlf`` rows (standardized inside the graph). The batch size is dynamic. The model's metadata (layout, default score, darkflow version) is stored in the ONNX file's
``metadata_props``.

Exported with ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from darkflow.config import Name, StrictModel
from darkflow.errors import ConfigError
from darkflow.fileio import atomic_output, check_output

NOT_EXPORTABLE = {
    "cnf": "its ODE solver (torchdiffeq) takes a data-dependent number of steps",
    "nsf-ar": "nflows' rational-quadratic splines branch on the data (torch.export cannot trace them)",
    "nsf-coupling": "nflows' rational-quadratic splines branch on the data (torch.export cannot trace them)",
}
"""Flows that cannot be written as a static ONNX graph, and why."""

INSTALL_HINT = "pip install 'darkflow[onnx]' (onnx, onnxscript, onnxruntime)"


class VAEScorer(nn.Module):
    """The scoring path of :class:`~darkflow.models.vae.FlowVAE` with named outputs.

    Shapes:
        forward: ``objects`` float32 ``(N, R, F)`` raw, ``mask`` bool ``(N, R)`` and, for a model with
        ``hlf_input``, ``hlf`` float32 ``(N, K)`` raw -> a tuple of ``(N,)`` scores in the order of :attr:`names`.
    """

    def __init__(self, model: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, objects: Tensor, mask: Tensor, hlf: Tensor | None = None) -> tuple[Tensor, ...]:
        out = self.model(objects, mask, sample=False, hlf=hlf)
        return tuple(out[k] for k in self.names)


def _check_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise ConfigError(f"ONNX export needs onnx and onnxscript, which are not installed: {INSTALL_HINT}") from None


def export_vae_onnx(run: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the VAE scorer of ``run`` to ``out`` (ONNX); see the module docstring for inputs and outputs."""
    from darkflow.train.run import load_model

    run, out = Path(run), Path(out)
    check_output(out, [run, Path(run) / "model.pt"])
    model, meta = load_model(run)
    kind = meta["config"]["model"].get("kind", "vae")
    if kind != "vae":
        raise ConfigError(f"{run} is a {kind} run; 'darkflow export' writes VAE runs (convvae, graphvae with any "
                          f"flow but {', '.join(NOT_EXPORTABLE)}) and CFLOW-AD runs")
    flow = meta["config"]["model"]["flow"]
    if flow in NOT_EXPORTABLE:
        raise ConfigError(f"{run}: the {flow!r} flow cannot be exported to ONNX ({NOT_EXPORTABLE[flow]}); "
                          f"every other flow can")
    _check_onnx()
    import onnx

    names = tuple(meta.get("scores", ("total", "reco", "kl", "latent_nll")))
    scorer = VAEScorer(model, names).eval()
    rows, features = len(meta["layout"]["rows"]), len(meta["layout"]["features"])
    objects = torch.zeros(3, rows, features)
    mask = torch.zeros(3, rows, dtype=torch.bool)
    mask[:, 0] = mask[:, -1] = True
    batch = torch.export.Dim("batch", min=1)
    inputs, input_names, shapes = (objects, mask), ["objects", "mask"], ({0: batch}, {0: batch})
    if getattr(model, "hlf_input", False):
        inputs += (torch.zeros(3, len(meta["hlf_scaler"]["names"])),)
        input_names.append("hlf")
        shapes += ({0: batch},)
    with atomic_output(out, inputs=[run, run / "model.pt"]) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            # torch.onnx notes that the inputs share one batch axis name; that is the intent.
            warnings.filterwarnings("ignore", message=r".*axis name: batch will not be used.*")
            try:
                program = torch.onnx.export(scorer, inputs, dynamo=True, verbose=False, input_names=input_names,
                                            output_names=list(names), dynamic_shapes=shapes)
            except Exception as err:  # torch.export / onnxscript raise many types
                first = " ".join(str(err).split())[:200]
                raise ConfigError(f"{run}: the {meta['config']['model'].get('encoder')} encoder with the {flow!r} "
                                  f"flow could not be exported to ONNX ({type(err).__name__}: {first})") from None
        proto = program.model_proto
        for key, value in {"darkflow_version": meta.get("darkflow_version", ""), "layout": json.dumps(meta["layout"]),
                           "default_score": meta.get("default_score", "total"), "scores": json.dumps(list(names)),
                           "flow": flow, "encoder": meta["config"]["model"].get("encoder", "")}.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, str(value)
        onnx.save(proto, str(tmp))
    return out


class ExportConfig(StrictModel):
    """Options of ``darkflow export``: the run directory (VAE or CFLOW-AD), the format and the output file."""

    run: Name
    out: Name
    format: Literal["onnx"] = "onnx"


@dataclass
class ExportResult:
    """The file written."""

    out: Path
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What was written."""
        return [f"wrote {self.out}"]


def run(config: ExportConfig) -> ExportResult:
    """``darkflow export``: a CFLOW-AD run (``cflow.pt``) through :func:`darkflow.cflow.export.export_onnx`,
    any other run through :func:`export_vae_onnx`."""
    from darkflow.fileio import check_input

    run_dir = check_input(config.run, "run directory", directory=True)
    if (run_dir / "cflow.pt").is_file():
        try:
            from darkflow.cflow.export import export_onnx
        except ImportError:
            raise ConfigError(f"{run_dir} is a CFLOW-AD run, and this installation has no CFLOW-AD export "
                              "(darkflow.cflow.export)") from None
        return ExportResult(export_onnx(run_dir, Path(config.out)))
    return ExportResult(export_vae_onnx(run_dir, config.out))
