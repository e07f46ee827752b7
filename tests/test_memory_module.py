import math

import pytest
import torch

from models import MemModule, MemoryUnit, hard_shrink_relu


def reference_addressing(queries, memory, lambd, addressing='dot', temperature=1.0):
    """Eq. 4-7 written out independently: soft-max (of the logits over the temperature), keep weights above
    lambda, L1 re-normalise, read out."""
    if addressing == 'cosine':
        logits = (queries / queries.norm(dim=1, keepdim=True)) @ (memory / memory.norm(dim=1, keepdim=True)).T
    else:
        logits = queries @ memory.T
    weights = torch.exp(logits / temperature)
    weights = weights / weights.sum(dim=1, keepdim=True)
    if lambd > 0:
        weights = torch.where(weights > lambd, weights, torch.zeros_like(weights))
        weights = weights / weights.sum(dim=1, keepdim=True)
    return weights, weights @ memory


@pytest.mark.parametrize('shape', [(2, 8, 5), (2, 8, 3, 4), (2, 8, 2, 3, 4)])
def test_mem_module_keeps_feature_shape_and_returns_weights_per_position(shape):
    module = MemModule(mem_dim=10, fea_dim=8, shrink_thres=0.05)
    result = module(torch.randn(*shape))
    assert result['output'].shape == shape
    assert result['att'].shape == (shape[0], 10, *shape[2:])
    torch.testing.assert_close(result['att'].sum(dim=1), torch.ones(shape[0], *shape[2:]))


@pytest.mark.parametrize('addressing', ['dot', 'cosine'])
def test_mem_module_positions_map_to_their_own_queries(addressing):
    """Position (b, t, h, w) of the feature map is addressed with the feature vector found there, as the
    module's addressing says."""
    torch.manual_seed(0)
    module = MemModule(mem_dim=6, fea_dim=4, shrink_thres=0.1, addressing=addressing)
    features = torch.randn(2, 4, 2, 3, 5)
    result = module(features)
    query = features[1, :, 1, 2, 3][None]
    expected_w, expected_out = reference_addressing(query, module.memory.weight.detach(), 0.1, addressing)
    torch.testing.assert_close(result['att'][1, :, 1, 2, 3], expected_w[0])
    torch.testing.assert_close(result['output'][1, :, 1, 2, 3], expected_out[0])


@pytest.mark.parametrize('addressing, temperature', [('dot', 1.0), ('cosine', 1.0), ('cosine', 0.1), ('dot', 3.0)])
def test_memory_unit_matches_the_equations(addressing, temperature):
    torch.manual_seed(1)
    unit = MemoryUnit(mem_dim=12, fea_dim=6, shrink_thres=1 / 12, addressing=addressing, temperature=temperature)
    queries = 3 * torch.randn(40, 6)
    result = unit(queries)
    expected_w, expected_out = reference_addressing(queries, unit.weight.detach(), 1 / 12, addressing, temperature)
    torch.testing.assert_close(result['att'], expected_w)
    torch.testing.assert_close(result['output'], result['att'] @ unit.weight)
    torch.testing.assert_close(result['output'], expected_out)


def test_weights_below_the_threshold_become_exactly_zero():
    torch.manual_seed(2)
    unit = MemoryUnit(mem_dim=20, fea_dim=8, shrink_thres=0.06)
    queries = 2 * torch.randn(30, 8)
    softmax = torch.softmax(queries @ unit.weight.detach().T, dim=1)
    att = unit(queries)['att'].detach()
    below = softmax < 0.06
    assert below.any() and (~below).any()
    assert torch.all(att[below] == 0)
    assert torch.all(att[~below] > 0)
    torch.testing.assert_close(att.sum(dim=1), torch.ones(30))


def test_zero_threshold_is_the_plain_softmax():
    torch.manual_seed(3)
    unit = MemoryUnit(mem_dim=7, fea_dim=5, shrink_thres=0)
    queries = torch.randn(9, 5)
    assert torch.equal(unit(queries)['att'], torch.softmax(queries @ unit.weight.T, dim=1))


def test_hard_shrink_relu_values():
    weights = torch.tensor([0.0, 0.01, 0.02, 0.5, 0.97])
    shrunk = hard_shrink_relu(weights, lambd=0.02)
    assert shrunk[:3].tolist() == [0.0, 0.0, 0.0]
    torch.testing.assert_close(shrunk[3:], weights[3:])
    torch.testing.assert_close(hard_shrink_relu(weights), weights)  # lambda 0 by default: nothing shrinks


def test_hard_shrink_relu_just_above_the_threshold_stays_between_zero_and_the_weight():
    """(w - lambda) / (|w - lambda| + eps) is a ratio in [0, 1): the epsilon guards the division without
    changing the sign, even when w - lambda is below eps."""
    lambd = 0.25
    weights = torch.tensor([lambd + 1e-15, lambd + 1e-13, lambd + 1e-6], dtype=torch.float64)
    shrunk = hard_shrink_relu(weights, lambd)
    assert torch.all(shrunk >= 0) and torch.all(shrunk <= weights)
    assert shrunk[2].item() == pytest.approx(weights[2].item(), rel=1e-5)


def test_constructor_defaults_are_the_released_ones():
    for module in (MemModule(10, 8), MemModule(10, 8).memory, MemoryUnit(10, 8)):
        assert (module.mem_dim, module.fea_dim, module.shrink_thres) == (10, 8, 0.0025)
    assert MemoryUnit(10, 8).temperature == 1.0
    assert (MemModule(10, 8).memory.addressing, MemModule(10, 8).memory.temperature) == ('dot', 1.0)
    assert 'mem_dim=10, fea_dim=8, shrink_thres=0.0025, addressing=dot, temperature=1.0' in repr(MemModule(10, 8))


def test_cosine_addressing_at_temperature_one_cannot_pick_one_slot():
    """With d in [-1, 1], no weight of N slots exceeds e / (e + (N - 1) / e) at T = 1 (0.069 for N = 100): the
    reason for the temperature. A lower temperature lets the slot nearest a query take almost all the weight."""
    torch.manual_seed(7)
    unit = MemoryUnit(mem_dim=100, fea_dim=16, shrink_thres=0, addressing='cosine')
    queries = unit.weight.detach()[:5] * 2.0  # each query points exactly at one slot: cosine 1 there
    bound = math.e / (math.e + 99 / math.e)
    largest = unit(queries)['att'].max(dim=1).values
    assert torch.all(largest <= bound + 1e-6)
    assert torch.all(largest > 0.02)
    unit.temperature = 0.02
    att = unit(queries)['att']
    assert torch.equal(att.argmax(dim=1), torch.arange(5))
    assert torch.all(att.max(dim=1).values > 0.9)


def test_cosine_addressing_ignores_query_scale():
    torch.manual_seed(4)
    unit = MemoryUnit(mem_dim=10, fea_dim=6, shrink_thres=0.05, addressing='cosine')
    queries = torch.randn(5, 6)
    torch.testing.assert_close(unit(queries)['att'], unit(7.5 * queries)['att'])
    dot = MemoryUnit(mem_dim=10, fea_dim=6, shrink_thres=0.05, addressing='dot')
    dot.weight.data.copy_(unit.weight.data)
    assert not torch.allclose(dot(queries)['att'], dot(7.5 * queries)['att'])


def test_gradcheck_float64():
    torch.manual_seed(5)
    unit = MemoryUnit(mem_dim=6, fea_dim=4, shrink_thres=0).double()
    queries = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    memory = unit.weight.detach().clone().requires_grad_()
    # Put the threshold in the widest gap between soft-max weights, away from the kink of the shrinkage where
    # the function has no derivative; some weights fall below it, some stay.
    weights = torch.softmax(queries.detach() @ memory.detach().T, dim=1).flatten().sort().values
    gaps = weights[1:] - weights[:-1]
    widest = int(torch.argmax(gaps[weights[:-1] > 0.02]) + (weights[:-1] <= 0.02).sum())
    unit.shrink_thres = float(weights[widest] + weights[widest + 1]) / 2
    assert 0 < (weights < unit.shrink_thres).sum() < len(weights)
    module = MemModule(6, 4).double()
    module.memory = unit

    def read_out(q, m):
        return torch.func.functional_call(module, {'memory.weight': m}, (q[..., None],))['output']

    assert torch.autograd.gradcheck(read_out, (queries, memory))


def test_memory_init_is_uniform_in_one_over_sqrt_c():
    torch.manual_seed(6)
    unit = MemoryUnit(mem_dim=2000, fea_dim=256)
    bound = 1 / math.sqrt(256)
    assert unit.weight.abs().max() <= bound
    assert unit.weight.abs().max() > 0.95 * bound
    assert abs(unit.weight.mean().item()) < 0.01 * bound


def test_rejects_wrong_inputs():
    module = MemModule(mem_dim=4, fea_dim=3)
    with pytest.raises(ValueError, match='B x C'):
        module(torch.randn(3, 3))
    with pytest.raises(ValueError, match='3 feature channels, got 5'):
        module(torch.randn(1, 5, 2, 2))
    with pytest.raises(ValueError, match='addressing'):
        MemoryUnit(4, 3, addressing='euclidean')
    for temperature in (0, -1.0):
        with pytest.raises(ValueError, match='temperature must be positive'):
            MemoryUnit(4, 3, temperature=temperature)
