"""The batch-job templates in data_prep/jobs/: valid shell, consistent shard counts, commands the CLI accepts."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from darkflow.cli import build_parser

JOBS = Path(__file__).resolve().parents[1] / "data_prep" / "jobs"


def parse(command: str):
    """Parse a ``darkflow ...`` command line with the real parser (argparse exits on an unknown flag)."""
    words = shlex.split(command)
    assert words[0] == "darkflow", command
    return build_parser().parse_args(words[1:])


def joined(path: Path) -> str:
    return re.sub(r"\\\n\s*", " ", path.read_text())


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("script", sorted(p.name for p in JOBS.glob("*.sh")))
def test_scripts_are_valid_bash(script):
    subprocess.run(["bash", "-n", str(JOBS / script)], check=True)


def test_slurm_array_and_merge_agree():
    text = joined(JOBS / "prepare_slurm.sh")
    n = int(re.search(r"^N_SHARDS=(\d+)$", text, re.M).group(1))
    assert "--array=0-$((N_SHARDS - 1))" in text and "--dependency=afterok:" in text
    wraps = re.findall(r'--wrap="(darkflow [^"]+)"', text)
    assert len(wraps) == 2
    values = {"$INPUTS": "/data/a.root /data/b.root", "$LABEL": "sm", "$OUT_DIR": "/scratch/x",
              "$N_SHARDS": str(n), "\\$SLURM_ARRAY_TASK_ID": "3"}
    prepare = wraps[0]
    for key, value in values.items():
        prepare = prepare.replace(key, value)
    args = parse(prepare)
    assert args.command == "prepare" and args.shard == f"3/{n}" and args.out == "/scratch/x/shards/shard_3.h5"
    shards = " ".join(f"/scratch/x/shards/shard_{i}.h5" for i in range(n))
    assert re.search(r"^SHARDS=\$\(for i in \$\(seq 0 \$\(\(N_SHARDS - 1\)\)\);", text, re.M)
    merge = wraps[1].replace("$SHARDS", shards + " ")
    for key, value in values.items():
        merge = merge.replace(key, value)
    args = parse(merge)
    assert args.command == "merge" and args.shards == shards.split() and args.out == "/scratch/x/sm.h5"


def submit_file(name: str) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in (JOBS / name).read_text().splitlines()
             if "=" in line and not line.startswith("#")]
    return {k.strip(): v.strip() for k, v in pairs}


def test_htcondor_queue_matches_shards_and_merge():
    sub = submit_file("prepare.sub")
    n = int(re.search(r"^queue (\d+)$", (JOBS / "prepare.sub").read_text(), re.M).group(1))
    args = parse(sub["arguments"].replace("$(Process)", "5"))
    assert args.shard == f"5/{n}" and args.out == "shards/shard_5.h5"
    merge = parse(submit_file("prepare_merge.sub")["arguments"])
    assert merge.shards == [f"shards/shard_{i}.h5" for i in range(n)]
    dag = (JOBS / "prepare.dag").read_text()
    assert "JOB shards prepare.sub" in dag and "PARENT shards CHILD merge" in dag


def test_ddp_scripts_match_their_resources():
    text = joined(JOBS / "train_ddp_slurm.sh")
    sbatch = dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)", text, re.M))
    command = re.search(r"^srun (darkflow train .*)$", text, re.M).group(1).replace("$USER", "me")
    args = parse(command)
    assert args.strategy == "ddp" and args.accelerator == "gpu"
    assert args.devices == int(sbatch["ntasks-per-node"]) == int(sbatch["gpus-per-node"])
    assert args.num_nodes == int(sbatch["nodes"])
    text = joined(JOBS / "train_torchrun.sh")
    line = re.search(r"^torchrun (.*)$", text, re.M).group(1)
    per_node = int(re.search(r"--nproc-per-node=(\d+)", line).group(1))
    nodes = int(re.search(r"--nnodes=(\d+)", line).group(1))
    args = parse("darkflow " + line.split(" -m darkflow ", 1)[1])
    assert args.devices == per_node and args.num_nodes == nodes and args.strategy == "ddp"
