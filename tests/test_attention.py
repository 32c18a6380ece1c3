"""course_utils.attention against torch's scaled_dot_product_attention and MultiheadAttention."""
import pytest
import torch
import torch.nn.functional as F

from course_utils.attention import MultiHeadAttention, causal_mask, scaled_dot_product_attention

TOL = 1e-5
SDPA_SEEDS = range(160)
MHA_SEEDS = range(60)


def random_mask(g: torch.Generator, lead: tuple[int, ...], tq: int, tk: int, kind: str) -> torch.Tensor | None:
    """A mask of ``kind`` broadcastable to ``(*lead, Tq, Tk)``; some dims are 1 to test broadcasting."""
    shape = [d if torch.rand(1, generator=g) < 0.5 else 1 for d in lead] + [tq, tk]
    if kind == "none":
        return None
    if kind == "bool":
        return torch.rand(shape, generator=g) < 0.7
    if kind == "float":
        return torch.randn(shape, generator=g)
    return causal_mask(tq, tk)


def allowed_rows(mask: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor:
    """Bool ``(..., Tq)``: the query rows with at least one key allowed."""
    if mask is None or mask.dtype != torch.bool:
        return torch.ones(shape[:-1], dtype=torch.bool)
    return mask.expand(shape).any(dim=-1)


@pytest.mark.parametrize("seed", SDPA_SEEDS)
def test_sdpa_matches_torch(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    lead = tuple(int(n) for n in torch.randint(1, 4, (int(torch.randint(0, 3, (1,), generator=g)),), generator=g))
    tq, tk, d, dv = (int(n) for n in torch.randint(1, 7, (4,), generator=g))
    kind = ["none", "bool", "float", "causal"][seed % 4]
    q, k, v = (torch.randn(*lead, t, n, generator=g) for t, n in ((tq, d), (tk, d), (tk, dv)))
    mask = random_mask(g, lead, tq, tk, kind)
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert out.shape == (*lead, tq, dv) and weights.shape == (*lead, tq, tk)
    assert torch.isfinite(out).all() and torch.isfinite(weights).all()
    if kind == "causal":                                         # torch's own causal alignment
        expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = q @ k.transpose(-2, -1) / d ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    ok = allowed_rows(mask, weights.shape)
    assert (out - expected)[ok].abs().max() <= TOL
    assert (weights - scores.softmax(-1))[ok].abs().max() <= TOL
    assert (weights[~ok] == 0).all() and (out[~ok] == 0).all()     # fully masked rows: zeros, no NaN


def test_causal_mask_matches_is_causal() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 4, 8, generator=g), torch.randn(2, 6, 8, generator=g), torch.randn(2, 6, 3, generator=g)
    out, _ = scaled_dot_product_attention(q, k, v, causal_mask(4, 6))
    assert (out - F.scaled_dot_product_attention(q, k, v, is_causal=True)).abs().max() <= TOL
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]


def test_fully_masked_row_is_zero() -> None:
    q, k, v = torch.randn(1, 2, 4), torch.randn(1, 3, 4), torch.randn(1, 3, 5)
    mask = torch.tensor([[False, False, False], [True, False, True]])
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert (weights[0, 0] == 0).all() and (out[0, 0] == 0).all()
    assert weights[0, 1].sum().item() == pytest.approx(1.0)
    out, weights = scaled_dot_product_attention(q, k, v, torch.full((2, 3), float("-inf")))
    assert (weights == 0).all() and (out == 0).all()


def test_large_logits_are_stable() -> None:
    q = torch.tensor([[1e4, 0.0], [-1e4, 1e4]])
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    v = torch.randn(3, 2)
    out, weights = scaled_dot_product_attention(q, k, v)
    assert torch.isfinite(out).all() and torch.isfinite(weights).all()
    assert (out - F.scaled_dot_product_attention(q, k, v)).abs().max() <= TOL
    assert weights.sum(-1).tolist() == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("shapes, mask_shape, words", [
    (((2, 3, 4), (2, 5, 8), (2, 5, 6)), None, ["(2, 3, 4)", "(2, 5, 8)"]),
    (((2, 3, 4), (2, 5, 4), (2, 6, 6)), None, ["(2, 5, 4)", "(2, 6, 6)"]),
    (((2, 3, 4), (3, 5, 4), (3, 5, 6)), None, ["(2, 3, 4)", "(3, 5, 4)"]),
    (((2, 3, 4), (2, 5, 4), (2, 5, 6)), (4, 5), ["(4, 5)", "(2, 3, 5)"]),
    (((2, 3, 4), (2, 5, 4), (2, 5, 6)), (4, 3, 5), ["(4, 3, 5)", "(2, 3, 5)"]),
    (((2, 3, 4), (2, 5, 4), (2, 5, 6)), (7, 2, 3, 5), ["(7, 2, 3, 5)", "(2, 3, 5)"]),
])
def test_bad_shapes_raise(shapes: tuple, mask_shape: tuple | None, words: list[str]) -> None:
    q, k, v = (torch.randn(*s) for s in shapes)
    mask = None if mask_shape is None else torch.ones(mask_shape, dtype=torch.bool)
    with pytest.raises(ValueError) as info:
        scaled_dot_product_attention(q, k, v, mask)
    for word in words:
        assert word in str(info.value)


def test_integer_input_raises() -> None:
    x = torch.ones(2, 3, dtype=torch.long)
    with pytest.raises(TypeError, match="floating"):
        scaled_dot_product_attention(x, x, x)


def test_embed_dim_not_divisible_raises() -> None:
    with pytest.raises(ValueError, match="10.*3"):
        MultiHeadAttention(10, 3)


def test_split_merge_round_trip() -> None:
    mha = MultiHeadAttention(12, 3)
    x = torch.randn(2, 5, 12)
    heads = mha.split_heads(x)
    assert heads.shape == (2, 3, 5, 4)
    assert torch.equal(heads[:, 1], x[..., 4:8])               # head 1 sees dims 4..7
    assert torch.equal(mha.merge_heads(heads), x)


@pytest.mark.parametrize("seed", MHA_SEEDS)
def test_mha_matches_torch(seed: int) -> None:
    g = torch.Generator().manual_seed(1000 + seed)
    b, h, tq, tk = (int(n) for n in torch.randint(1, 4, (4,), generator=g))
    dim = h * int(torch.randint(1, 5, (1,), generator=g))
    torch.manual_seed(seed)
    theirs = torch.nn.MultiheadAttention(dim, h, bias=seed % 2 == 0, batch_first=True).eval()
    ours = MultiHeadAttention.from_torch(theirs)
    query = torch.randn(b, tq, dim, generator=g)
    kind = ["self", "cross", "causal", "bool", "float"][seed % 5]
    if kind == "self" or kind == "causal":
        key = value = None
        tk = tq
    else:
        key, value = torch.randn(b, tk, dim, generator=g), torch.randn(b, tk, dim, generator=g)
    mask = None
    if kind == "bool":                                          # every row keeps key 0 (torch gives NaN else)
        mask = torch.rand(tq, tk, generator=g) < 0.6
        mask[:, 0] = True
    elif kind == "float":
        mask = torch.randn(tq, tk, generator=g)
    extra = None
    if kind == "causal":                                        # causal, plus a bool mask on odd seeds
        extra = torch.rand(tq, tq, generator=g) < 0.6 if seed % 2 else None
        mask = torch.ones(tq, tq, dtype=torch.bool).tril()     # built independently of causal_mask
        if extra is not None:
            extra[:, 0] = True
            mask = mask & extra
    out, weights = ours(query, key, value, mask=extra if kind == "causal" else mask, causal=kind == "causal")
    torch_mask = None if mask is None else (~mask if mask.dtype == torch.bool else mask)  # torch: True = blocked
    k_in = query if key is None else key
    v_in = query if value is None else value
    with torch.no_grad():
        expected, expected_weights = theirs(query, k_in, v_in, attn_mask=torch_mask, average_attn_weights=False)
        _, mean_weights = theirs(query, k_in, v_in, attn_mask=torch_mask, average_attn_weights=True)
    assert out.shape == (b, tq, dim) and weights.shape == (b, h, tq, tk)
    assert (out - expected).abs().max() <= TOL
    assert (weights - expected_weights).abs().max() <= TOL
    assert (weights.mean(1) - mean_weights).abs().max() <= TOL


def test_key_padding_mask_matches_torch() -> None:
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    ours = MultiHeadAttention.from_torch(theirs)
    q, kv = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    keep = torch.tensor([[True] * 5, [True, True, False, False, False]])
    out, _ = ours(q, kv, kv, key_padding_mask=keep)
    with torch.no_grad():
        expected, _ = theirs(q, kv, kv, key_padding_mask=~keep)
    assert (out - expected).abs().max() <= TOL


@pytest.mark.parametrize("bias", [True, False])
def test_to_torch_round_trip(bias: bool) -> None:
    torch.manual_seed(1)
    ours = MultiHeadAttention(12, 4, bias=bias)
    theirs = ours.to_torch().eval()
    assert theirs.batch_first
    x, y = torch.randn(2, 5, 12), torch.randn(2, 7, 12)
    above = torch.ones(5, 5, dtype=torch.bool).triu(1)               # torch: True = blocked
    float_mask = torch.randn(5, 5)
    cases = [((x,), {}, None), ((x, y, y), {}, None), ((x,), {"causal": True}, above),
             ((x,), {"causal": True, "mask": float_mask}, float_mask.masked_fill(above, float("-inf")))]
    with torch.no_grad():
        for args, kwargs, torch_mask in cases:
            out, weights = ours(*args, **kwargs)
            full = args if len(args) == 3 else (x, x, x)
            expected, expected_weights = theirs(*full, attn_mask=torch_mask, average_attn_weights=False)
            assert (out - expected).abs().max() <= TOL
            assert (weights - expected_weights).abs().max() <= TOL
    back = MultiHeadAttention.from_torch(theirs)
    for name, tensor in ours.state_dict().items():
        assert torch.equal(tensor, back.state_dict()[name]), name
