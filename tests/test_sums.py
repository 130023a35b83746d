"""methods/growth/sums.py: the float64 sums of the statistics pass, through a reused conversion buffer."""

import torch

from methods.growth.sums import Sums


def test_sums_are_the_float64_additions_bit_for_bit():
    gen = torch.Generator().manual_seed(0)
    parts = [torch.randn(6, 5, 3, 3, generator=gen) for _ in range(4)]
    parts[1] = parts[1].contiguous(memory_format=torch.channels_last)   # a conv weight gradient's strides
    parts[2] = torch.randn(5, 6, 3, 3, generator=gen).transpose(0, 1)   # a transposed view
    sums = Sums()
    for p in parts:
        sums.add("k", p)
    expected = parts[0].double()
    for p in parts[1:]:
        expected = expected + p.double()
    assert torch.equal(sums["k"], expected)
    assert sums["k"].dtype == torch.float64 and sums["k"].is_contiguous()


def test_a_new_key_is_a_contiguous_copy_and_float64_input_is_not_converted():
    sums = Sums()
    t = torch.randn(4, 3).T                      # not contiguous
    sums.add("a", t)
    assert sums["a"].is_contiguous() and torch.equal(sums["a"], t.double())
    t[0, 0] = 100.0                              # the sum does not alias its first term
    assert sums["a"][0, 0] != 100.0
    d = torch.randn(3, 4, dtype=torch.float64)
    assert sums.float64(d) is d
    sums.add("b", d.T)                           # a float64 first term is copied too, not aliased
    d[0, 0] = 100.0
    assert sums["b"].is_contiguous() and sums["b"][0, 0] != 100.0


def test_the_buffer_grows_to_the_largest_product_and_is_reused():
    sums = Sums()
    sums.float64(torch.ones(10))
    first = sums.buffer.data_ptr()
    assert sums.float64(torch.full((2, 3), 2.0)).data_ptr() == first      # smaller: the same memory
    big = sums.float64(torch.ones(50))
    assert sums.buffer.numel() == 50 and torch.equal(big, torch.ones(50, dtype=torch.float64))
    sums.add("x", torch.ones(2, 2))
    sums.add("x", torch.full((2, 2), 0.5))
    assert torch.equal(sums["x"], torch.full((2, 2), 1.5, dtype=torch.float64))
