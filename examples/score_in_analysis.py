"""Score NanoAOD events with a DarkFlow run inside an analysis, without ``prepare`` or ``score``.

Two ways, both through :class:`darkflow.Scorer` (the conversion of ``darkflow prepare`` with the object
definitions, channel and layout of the run's training file, then the run's model):

* ``--engine coffea`` (extra ``coffea``): a coffea processor run by ``coffea.processor.Runner`` on NanoEvents
  (``events.Jet.pt``); ``--workers N`` runs it in N processes (each loads the model once).
* ``--engine dask``: ``dask_awkward.map_partitions`` over ``uproot.dask`` arrays (``events.Jet_pt``), only the
  branches the scorer reads are read; ``--workers N`` computes in N processes.

Usage::

    python examples/score_in_analysis.py --run RUN --out scores.npz FILE.root [FILE.root ...]

Writes ``scores.npz``: for every event of the files, in file order, ``event`` (the event number), ``selected``
(passes the run's channel) and one array per score of the run (NaN where not selected); prints how many
events were read and selected and the five most anomalous selected events with their MET.
"""

from __future__ import annotations

import argparse
import warnings

import awkward as ak
import numpy as np

from darkflow import Scorer


def coffea_processor(scorer: Scorer):
    """A coffea processor: per dataset, the event numbers, the run's scores (one column each) and the MET."""
    from coffea import processor

    class AnomalyScores(processor.ProcessorABC):
        def process(self, events):
            scores = scorer(events)
            columns = {"event": events.event, "entry": ak.local_index(events.event, axis=0) + events.metadata["entrystart"],
                       "MET": events.MET.pt, "selected": scores.selected}
            columns |= {name: scores[name] for name in scorer.names}
            out = {name: processor.column_accumulator(ak.to_numpy(values)) for name, values in columns.items()}
            return {events.metadata["filename"]: out}

        def postprocess(self, accumulator):
            return accumulator

    return AnomalyScores()


def with_coffea(scorer: Scorer, files: list[str], workers: int, chunk_size: int) -> dict[str, np.ndarray]:
    from coffea import processor
    from coffea.nanoevents import NanoAODSchema

    executor = processor.FuturesExecutor(workers=workers) if workers > 1 else processor.IterativeExecutor()
    runner = processor.Runner(executor=executor, schema=NanoAODSchema, chunksize=chunk_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NanoAODSchema: cross-references this file lacks
        result = runner({"sample": files}, coffea_processor(scorer), treename="Events")
    parts = []
    for name in files:  # chunks come back in any order: put every file's events back in entry order
        columns = {k: v.value for k, v in result[name].items()}
        order = np.argsort(columns.pop("entry"), kind="stable")
        parts.append({k: v[order] for k, v in columns.items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def with_dask(scorer: Scorer, files: list[str], workers: int, chunk_size: int) -> dict[str, np.ndarray]:
    import dask
    import uproot

    events = uproot.dask({name: "Events" for name in files}, step_size=chunk_size)
    scores = scorer.dask(events)  # dask_awkward.map_partitions(scorer, events)
    columns = {"event": events.event, "MET": events.MET_pt, "selected": scores.selected}
    columns |= {name: scores[name] for name in scorer.names}
    options = {"scheduler": "processes", "num_workers": workers} if workers > 1 else {"scheduler": "sync"}
    (computed,) = dask.compute(columns, **options)
    return {k: ak.to_numpy(v) for k, v in computed.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="NanoAOD ROOT files")
    parser.add_argument("--run", required=True, help="run directory of darkflow train")
    parser.add_argument("--out", required=True, help="output .npz (written atomically)")
    parser.add_argument("--engine", choices=["coffea", "dask"], default="coffea")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1: in this process)")
    parser.add_argument("--chunk-size", type=int, default=100_000, help="events per chunk or partition")
    parser.add_argument("--device", default=None, help="torch device (default: cuda where there is a GPU)")
    args = parser.parse_args(argv)

    from darkflow.fileio import atomic_output, check_input

    files = [str(check_input(name, "input file")) for name in args.files]
    scorer = Scorer(args.run, device=args.device)
    engine = with_coffea if args.engine == "coffea" else with_dask
    columns = engine(scorer, files, args.workers, args.chunk_size)
    with atomic_output(args.out, inputs=files) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **columns)

    selected = columns["selected"]
    default = scorer.default_score
    print(f"{args.engine}: {len(selected)} events read, {int(selected.sum())} selected; wrote {args.out}")
    top = np.argsort(np.where(selected, -columns[default], np.inf))[: min(5, int(selected.sum()))]
    for i in top:
        print(f"  event {columns['event'][i]}: {default} {columns[default][i]:.4g}, MET {columns['MET'][i]:.1f} GeV")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
