"""Training batches stream from HDF5: a file larger than the process's memory limit is read through."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import random_nanoaod, write_tree

from darkflow.data_prep.prepare import PrepareConfig, prepare
from darkflow.events import DATASETS, EventFile, EventFileWriter

# In a fresh interpreter: import torch and Lightning, cap the data segment (heap and anonymous maps,
# RLIMIT_DATA) at what they use plus 300 MB, check that the cap bites, then read the whole file.
CHILD = r"""
import json, os, resource, sys
import numpy as np, torch, lightning, h5py
from darkflow.train.data import EventBatches, batch_loader

def vm_data():
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmData"))

limit = vm_data() + 300 * 2**20
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
path = sys.argv[1]
size = os.path.getsize(path)
try:
    np.ones(size, dtype=np.uint8)
    sys.exit("the memory limit is not enforced")
except MemoryError:
    pass
with h5py.File(path) as h:
    n = h["mask"].shape[0]
data = EventBatches(path, np.arange(n))
total, count = 0.0, 0
for batch in batch_loader(data, 32768, shuffle=False):
    total += batch["objects"][..., 1].double().sum().item()
    count += len(batch["mask"])
for i, batch in enumerate(batch_loader(data, 4096, shuffle=True, seed=1)):
    assert len(batch["mask"]) == 4096
    if i == 20:
        break
print(json.dumps({"limit": limit, "size": size, "in_memory": data.in_memory, "count": count, "pt_sum": total}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmData from /proc (Linux)")
def test_a_file_larger_than_the_memory_limit_streams(tmp_path):
    src = write_tree(tmp_path / "sm.root", random_nanoaod(np.random.default_rng(0), 5000))
    small = tmp_path / "small.h5"
    prepare(PrepareConfig(inputs=[str(src)], out=str(small)), progress=False)
    with h5py.File(small) as h:
        block = {d: h[d][:] for d in DATASETS}
    attrs = EventFile(small).attrs
    big, repeats = tmp_path / "big.h5", 280  # 1.4 M events, ~ 850 MB
    expected = 0.0
    with EventFileWriter(big, *block["objects"].shape[1:], block["hlf"].shape[1]) as writer:
        for i in range(repeats):
            part = dict(block, objects=block["objects"] * np.float32(1 + i / repeats))
            expected += part["objects"][..., 1].astype(np.float64).sum()
            writer.append(**part)
        writer.close(attrs)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(big)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["size"] > result["limit"] and not result["in_memory"]
    assert result["count"] == 5000 * repeats
    assert result["pt_sum"] == pytest.approx(expected, rel=1e-9)
