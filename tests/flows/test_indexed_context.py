"""``IndexedContext``: CFLOW-AD's coupling block gives the same map, log-determinant and gradients as with the
dense context (float64), for an index per sample and for tiled rows; other flows get the dense context."""

import pytest
import torch

from darkflow.flows import IndexedContext, build_flow


def _dense_and_indexed(kind: str, n: int = 5, p: int = 6):
    g = torch.Generator().manual_seed(0)
    table = torch.randn(p, 8, generator=g, dtype=torch.float64)
    if kind == "index":
        index = torch.randint(0, p, (n * p,), generator=g)
        return table[index], IndexedContext(table, index)
    return table.repeat(n, 1), IndexedContext(table)


@pytest.mark.parametrize("kind", ["index", "tiled"])
@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_cflow_coupling_indexed_equals_dense(kind, direction):
    torch.manual_seed(1)
    flow = build_flow("cflow-coupling", features=4, context=8, num_layers=3, permutation="orthogonal").double()
    assert flow.indexed_context
    dense, indexed = _dense_and_indexed(kind)
    z = torch.randn(len(dense), 4, dtype=torch.float64)
    call = getattr(flow, direction)
    out_d, ld_d = call(z, dense)
    (out_d.sum() + ld_d.sum()).backward()
    grads_d = [p.grad.clone() for p in flow.parameters()]
    flow.zero_grad()
    out_i, ld_i = call(z, indexed)
    (out_i.sum() + ld_i.sum()).backward()
    torch.testing.assert_close(out_i, out_d)
    torch.testing.assert_close(ld_i, ld_d)
    for a, b in zip(grads_d, [p.grad for p in flow.parameters()], strict=True):
        torch.testing.assert_close(a, b)


def test_other_flows_get_the_dense_context():
    torch.manual_seed(2)
    flow = build_flow("realnvp", features=4, context=8, num_layers=2).double()
    dense, indexed = _dense_and_indexed("tiled")
    z = torch.randn(len(dense), 4, dtype=torch.float64)
    torch.testing.assert_close(flow(z, indexed)[0], flow(z, dense)[0])


def test_bad_indexed_context_is_refused():
    from darkflow.errors import ConfigError

    flow = build_flow("cflow-coupling", features=4, context=8, num_layers=1)
    with pytest.raises(ConfigError, match="indexed context"):
        flow(torch.randn(7, 4), IndexedContext(torch.randn(3, 8)))  # 3 does not divide 7


@pytest.mark.parametrize("permutation", ["orthogonal", "random"])
def test_chunks_sharing_one_context_equal_the_dense_pass(permutation):
    """Without gradients a block projects the table once per context; chunks of whole tiles reuse it and give the
    dense result; the folded weights and the projections kept without gradients follow a change of the weights."""
    torch.manual_seed(3)
    flow = build_flow("cflow-coupling", features=5, context=8, num_layers=3, permutation=permutation).double()
    dense, indexed = _dense_and_indexed("tiled", n=4, p=6)
    z = torch.randn(len(dense), 5, dtype=torch.float64)
    with torch.no_grad():
        parts = [flow(chunk, indexed) for chunk in z.split(12)]
        torch.testing.assert_close(torch.cat([u for u, _ in parts]), flow(z, dense)[0])
        torch.testing.assert_close(torch.cat([ld for _, ld in parts]), flow(z, dense)[1])
        for p in flow.parameters():
            p.add_(0.1)
        u, log_det = flow(z, indexed)  # the same context: its kept projections follow the new weights
    with torch.enable_grad():  # the weights folded afresh, no cache
        u_ref, log_det_ref = flow(z, dense)
    torch.testing.assert_close(u, u_ref.detach())
    torch.testing.assert_close(log_det, log_det_ref.detach())
