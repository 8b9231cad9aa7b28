"""Forward + backward time of every registered flow, against zuko where zuko has the same flow.

For every name in :data:`darkflow.flows.FLOWS` (built with its default options, ``D = 16``, ``C = 32``,
float32, CPU, train mode) one step is ``z_K, log_det = flow(z_0, context)``, ``loss = sum(z_K^2 / 2 -
log_det)``, ``loss.backward()`` on a batch of 10k latent vectors (``z_0`` requires grad, as it does when it
comes from the encoder). After warm-up the median of several repeats is printed, in ms per 10k vectors
(and, for the ratio to zuko, also the ratio of the fastest repeats, robust to load from other processes).
Names that fail to build or run are skipped with the reason. ``torch.set_num_threads`` is left at its
default (printed with the machine).

Where zuko has the equivalent flow, it is built with the same depth, widths, bins and context size and timed
in the same run, the two interleaved repeat by repeat (so that load from other processes hits both alike),
doing the same computation as our ``forward``; the ratio ours/zuko is printed (target <= 1.5):

========================  =======================================================================
ours (default options)    zuko counterpart (transform built from the context inside the timed step)
========================  =======================================================================
``maf`` forward           ``MAF`` ``.inv`` -- the sampling direction: ``D`` sequential MADE passes
                          per layer on both sides (zuko one more for its log-det)
``maf`` inverse (extra)   ``MAF`` forward -- the density direction, one MADE pass per layer
``iaf``                   ``MAF`` forward -- ``z' = z * s(z) + m(z)``, one MADE pass per layer
``nsf-ar``                ``MAF`` with ``MonotonicRQSTransform(bound=tail_bound)``, ``K`` bins,
                          ``(K, K, K - 1)`` knot parameters (zuko's ``NSF`` with nflows' bound),
                          forward: one MADE pass per layer
``nice``                  ``NICE`` with ``AdditiveTransform`` (additive couplings; our final diagonal
                          scaling, O(BD), has no zuko counterpart)
``realnvp``               ``NICE`` (zuko's default affine couplings, i.e. RealNVP)
``nsf-coupling``          ``NICE`` with ``MonotonicRQSTransform(bound=tail_bound)``, ``K`` bins
``cnf`` (information)     ``CNF`` with the same MLP (``num_layers`` tanh layers of ``hidden_features``),
                          rtol/atol and exact trace
========================  =======================================================================

Matching the networks. Layers: ``num_layers`` transforms on both sides, masks or orders alternating
(our ``permutation="reverse"`` = zuko's alternating orders; coupling masks even/odd on both).
Widths: nflows' MADE (``num_blocks`` masked residual blocks of ``hidden_features``) against zuko's
``MaskedMLP(hidden_features=[H] * num_blocks, residual=True)``: the same chain of linear maps, input,
``2 * num_blocks`` hidden ``H x H`` maps, output. nflows' ``ResidualNet`` (coupling) against zuko's plain
``MLP(hidden_features=[H] * (2 * num_blocks + 1))``: again ``2 * num_blocks + 2`` linear maps (zuko's ``MLP``
has no residual option). Context: zuko concatenates it to the network's input; nflows adds a
``Linear(C, H)`` of it to the first hidden layer and, inside every residual block, another ``Linear(C, H)``
(MADE: added; ``ResidualNet``: a GLU gate). That extra conditioning, ``num_blocks`` more ``C x H`` maps per
network, is part of nflows' design and is counted against us.
Directions: our nflows-based flows run nflows' transform backwards (``forward = transform.inverse``), so
the coupling flows (``nice``, ``realnvp``, ``nsf-coupling``) compute nflows' inverse elementwise map (for
the spline, a quadratic's root) while zuko's counterpart computes its forward one; both are one network pass
per layer. (``iaf`` and ``nsf-ar`` wrap nflows' layers in ``InverseTransform``, so their forward is nflows'
forward, as zuko's.) zuko's ``.inv`` of
a coupling would cost a second network pass for the log-det, so its forward is the fair counterpart.
CNF: ODE solvers differ (zuko's own Dormand-Prince with adaptive checkpoint adjoint, torchdiffeq's
``dopri5`` here), so the number of function evaluations differs; the ratio is information, not a target.

Run: ``python benchmarks/bench_flows.py [--batch 10000] [--repeats 5] [--flows maf nice ...]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from darkflow.flows import FLOWS, build_flow, flow_options

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _record import record  # noqa: E402

D, C = 16, 32
TARGET = 1.5

Step = Callable[[], None]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loss_step(run: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]], module: nn.Module, batch: int) -> Step:
    """One timed step: ``run(z_0, context) -> (z_K, log_det)``, the loss, its backward."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(batch, D, generator=g).requires_grad_(True)
    context = torch.randn(batch, C, generator=g)

    def step() -> None:
        module.zero_grad(set_to_none=True)
        z.grad = None
        z_k, log_det = run(z, context)
        (z_k.pow(2).sum() / 2 - log_det.sum()).backward()

    return step


def ours(name: str, batch: int, direction: str = "forward", **options) -> tuple[Step, nn.Module]:
    torch.manual_seed(0)
    flow = build_flow(name, features=D, context=C, **options).train()
    run = flow if direction == "forward" else flow.inverse
    return loss_step(run, flow, batch), flow


def zuko_counterpart(name: str, batch: int, direction: str = "forward") -> tuple[Step, str] | None:
    """zuko's equivalent of our flow ``name`` (default options), or None where zuko has none."""
    import zuko
    from zuko.transforms import AdditiveTransform, MonotonicRQSTransform

    o = flow_options(name)
    torch.manual_seed(0)
    if name in ("maf", "iaf", "nsf-ar"):
        nb, h = o["num_blocks"], o["hidden_features"]
        net = dict(hidden_features=[h] * nb, residual=True) if nb else dict(hidden_features=[h])
        if name == "nsf-ar":
            k = o["num_bins"]
            spline = partial(MonotonicRQSTransform, bound=float(o["tail_bound"]))
            flow = zuko.flows.MAF(
                D, C, transforms=o["num_layers"], univariate=spline, shapes=[(k,), (k,), (k - 1,)], **net
            )
            label = f"MAF+RQS K={k}, {o['num_layers']}x, MaskedMLP {net['hidden_features']}"
        else:
            flow = zuko.flows.MAF(D, C, transforms=o["num_layers"], **net)
            label = f"MAF, {o['num_layers']}x, MaskedMLP {net['hidden_features']} res"
        invert = name == "maf" and direction == "forward"  # our maf.forward is the D-pass sampling direction
        label += " (.inv)" if invert else ""
    elif name in ("nice", "realnvp", "nsf-coupling"):
        hidden = [o["hidden_features"]] * (2 * o["num_blocks"] + 1)
        kind = {}
        if name == "nice":
            kind = dict(univariate=AdditiveTransform, shapes=[()])
        elif name == "nsf-coupling":
            k = o["num_bins"]
            kind = dict(
                univariate=partial(MonotonicRQSTransform, bound=float(o["tail_bound"])),
                shapes=[(k,), (k,), (k - 1,)],
            )
        flow = zuko.flows.NICE(D, C, transforms=o["num_layers"], hidden_features=hidden, **kind)
        label = f"NICE{'+additive' if name == 'nice' else '+RQS' if kind else ''}, {o['num_layers']}x, MLP {hidden}"
        invert = False
    elif name == "cnf":
        hidden = [o["hidden_features"]] * o["num_layers"]
        flow = zuko.flows.CNF(
            D,
            C,
            hidden_features=hidden,
            activation=nn.Tanh,
            rtol=o["rtol"],
            atol=o["atol"],
            exact=o["trace"] == "exact",
        )
        label = f"CNF, MLP {hidden} tanh, tol {o['rtol']:g}"
        invert = False
    else:
        return None
    flow.train()

    def run(z: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        transform = flow.transform(context)
        return (transform.inv if invert else transform).call_and_ladj(z)

    return loss_step(run, flow, batch), label


def timed(step: Step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def measure(
    steps: list[Step], warmup: int, repeats: int, budget: float
) -> tuple[list[float], list[float], int]:
    """Median and minimum seconds of each step and the number of repeats, repeats interleaved.

    Repeats stop (at 3 or more) once ``budget`` seconds are spent. When a warm-up step alone takes more than
    ``budget / 4`` seconds, the warm-up times are the measurement (one run; first-call overheads are
    negligible against such a step).
    """
    warm = [0.0 for _ in steps]
    for i, step in enumerate(steps):
        for _ in range(warmup):
            warm[i] = max(warm[i], timed(step))
    if max(warm) > budget / 4:
        return warm, warm, 1
    times: list[list[float]] = [[] for _ in steps]
    start = time.perf_counter()
    for r in range(repeats):
        for i, step in enumerate(steps):
            times[i].append(timed(step))
        if r >= 2 and time.perf_counter() - start > budget:
            break
    return [statistics.median(t) for t in times], [min(t) for t in times], len(times[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--budget", type=float, default=60.0, help="seconds per flow before repeats are cut to 3"
    )
    parser.add_argument("--flows", nargs="*", default=None, help="names to run (default: all)")
    args = parser.parse_args()

    try:
        import zuko

        zuko_version = zuko.__version__
    except ImportError:
        zuko_version = None
    print(f"machine: {cpu_name()}, {os.cpu_count()} logical cores, {platform.system()} {platform.machine()}")
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()} (default), "
        f"zuko {zuko_version or 'not installed (pip install zuko)'}, load average {os.getloadavg()}"
    )
    print(
        f"batch {args.batch}, D = {D}, C = {C}, float32, forward + backward, median of up to {args.repeats}"
    )
    print()

    rows = []
    names = sorted(FLOWS) if args.flows is None else args.flows
    jobs = [(name, "forward") for name in names]
    if "maf" in names:
        jobs.insert(names.index("maf") + 1, ("maf", "inverse"))
    for name, direction in jobs:
        label = name if direction == "forward" else f"{name}.inverse"
        try:
            step, flow = ours(name, args.batch, direction)
        except Exception as error:  # a flow still being written, or a bad option
            print(f"skip {label}: cannot build ({type(error).__name__}: {error})")
            continue
        steps, ref = [step], None
        if zuko_version is not None:
            counterpart = zuko_counterpart(name, args.batch, direction)
            if counterpart is not None:
                steps.append(counterpart[0])
                ref = counterpart[1]
        try:
            medians, minima, runs = measure(steps, args.warmup, args.repeats, args.budget)
        except Exception as error:
            print(f"skip {label}: fails to run ({type(error).__name__}: {error})")
            continue
        note = ", ".join(
            ([f"nfe {flow.evaluations}"] if hasattr(flow, "evaluations") else [])
            + ([f"{runs} run"] if runs < 3 else [])
        )
        rows.append((label, medians[0], ref, medians[1] if ref else None, minima[0] / minima[-1], note))
        zuko_ms = f"{1e3 * medians[1]:.0f} ms" if ref else "-"
        print(f"  {label}: {1e3 * medians[0]:.0f} ms, zuko {zuko_ms}", flush=True)

    per = 10_000 / args.batch
    print()
    print(
        f"{'flow':<22} {'ours ms/10k':>12} {'zuko ms/10k':>12} {'ours/zuko':>10} {'(minima)':>9}  zuko counterpart"
    )
    print("-" * 120)
    for label, t_ours, ref, t_zuko, min_ratio, note in rows:
        if ref is None:
            print(f"{label:<22} {1e3 * t_ours * per:>12.1f} {'-':>12} {'-':>10} {'-':>9}  {note}")
            continue
        ratio = t_ours / t_zuko
        flag = "" if label.startswith("cnf") else ("  ok" if ratio <= TARGET else f"  > {TARGET}")
        print(f"{label:<22} {1e3 * t_ours * per:>12.1f} {1e3 * t_zuko * per:>12.1f} {ratio:>10.2f} {min_ratio:>9.2f}"
              f"  {ref}{flag}" + (f"; {note}" if note else ""))  # fmt: skip
    print(
        f"ours/zuko: ratio of the medians (the target, <= {TARGET}); (minima): ratio of the fastest repeats,"
    )
    print("less sensitive to other processes on the machine.")
    print(f"\nload average at the end {os.getloadavg()}")
    recorded = []
    for label, t_ours, ref, t_zuko, min_ratio, note in rows:
        recorded.append({"name": f"{label}: ours", "value": 1e3 * t_ours * per, "unit": "ms/10k", "reference": None,
                         "target": None, "ok": None, "note": note})
        if ref is not None:
            ratio = t_ours / t_zuko
            cnf = label.startswith("cnf")
            recorded.append({"name": f"{label}: ours / zuko", "value": ratio, "unit": "",
                             "reference": f"zuko {1e3 * t_zuko * per:.1f} ms/10k ({ref})",
                             "target": None if cnf else f"<= {TARGET}", "ok": None if cnf else ratio <= TARGET,
                             "ratio_of_minima": min_ratio})
    record("bench_flows", recorded, {"batch": args.batch, "D": D, "C": C, "zuko": zuko_version,
                                     "load_average_end": os.getloadavg()})


if __name__ == "__main__":
    main()
