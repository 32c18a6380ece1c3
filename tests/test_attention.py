"""course_utils.attention against torch's scaled_dot_product_attention and MultiheadAttention."""
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_utils.attention import (
    MultiHeadAttention,
    blockwise_attention,
    causal_mask,
    merge_heads,
    scaled_dot_product_attention,
    split_heads,
)

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


# ---------------------------------------------------------------------------------------------
# Masks of other kinds, and inputs of the wrong shape, are refused by name
# ---------------------------------------------------------------------------------------------

def test_integer_mask_is_refused_not_added() -> None:
    """A 0/1 integer mask used to be added to the scores: most of the weight went to the masked keys."""
    q, k, v = torch.randn(1, 2, 4), torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    keep = torch.tensor([[1, 0, 0], [1, 1, 0]])
    with pytest.raises(TypeError, match=r"mask: .*integer.*mask\.bool\(\)"):
        scaled_dot_product_attention(q, k, v, keep)
    with pytest.raises(TypeError, match=r"mask\.bool\(\)"):
        MultiHeadAttention(4, 2)(torch.randn(1, 3, 4), mask=torch.ones(3, 3, dtype=torch.long).tril())
    _, weights = scaled_dot_product_attention(q, k, v, keep.bool())
    assert (weights[..., ~keep.bool()] == 0).all()


def test_key_padding_mask_must_be_bool() -> None:
    """A float key_padding_mask used to become an additive mask, giving other weights than the same mask as bool."""
    mha = MultiHeadAttention(4, 2)
    x = torch.randn(2, 3, 4)
    keep = torch.tensor([[True, True, False], [True, False, False]])
    for other in (keep.float(), keep.long()):
        with pytest.raises(TypeError, match=r"key_padding_mask: .*bool.*key_padding_mask\.bool\(\)"):
            mha(x, key_padding_mask=other)
    with pytest.raises(ValueError, match=r"key_padding_mask: expected shape \(B, Tk\) = \(2, 3\), got \(3,\)"):
        mha(x, key_padding_mask=keep[0])
    _, weights = mha(x, key_padding_mask=keep)
    assert (weights[:, :, :, 2] == 0).all() and (weights[1, :, :, 1] == 0).all()


@pytest.mark.parametrize("shape, words", [((5, 8), ["query", r"\(B, T, 8\)", r"query\[None\]"]),
                                          ((2, 5, 6), ["query", r"\(B, T, 8\)"]),
                                          ((2, 5, 8, 1), ["query"])])
def test_mha_refuses_tokens_of_another_shape(shape: tuple[int, ...], words: list[str]) -> None:
    """A (T, D) tensor used to fail with "not enough values to unpack" from inside split_heads."""
    with pytest.raises(ValueError) as info:
        MultiHeadAttention(8, 2)(torch.randn(*shape))
    for word in words:
        assert re.search(word, str(info.value)), (word, str(info.value))


def test_mha_refuses_masks_that_do_not_fit_and_other_dtypes() -> None:
    mha = MultiHeadAttention(8, 2)
    x = torch.randn(2, 3, 8)
    with pytest.raises(ValueError, match=r"mask of shape \(4, 3\)"):
        mha(x, mask=torch.ones(4, 3, dtype=torch.bool), causal=True)
    with pytest.raises(TypeError, match=r"query: expected torch.float32"):
        mha(x.double())
    with pytest.raises(TypeError, match=r"key: expected a floating-point tensor"):
        mha(x, torch.ones(2, 3, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"Tk >= 1"):
        mha(x, torch.randn(2, 0, 8))
    with pytest.raises(ValueError, match="num_heads"):
        MultiHeadAttention(8, 0)


def test_float_mask_takes_the_scores_dtype_and_mixed_qkv_are_refused() -> None:
    q = torch.randn(2, 3, 4)
    out, weights = scaled_dot_product_attention(q, q, q, torch.zeros(3, 3, dtype=torch.float64))
    assert out.dtype == weights.dtype == torch.float32
    with pytest.raises(TypeError, match="one dtype"):
        scaled_dot_product_attention(q, q.double(), q)
    with torch.autocast("cpu", dtype=torch.bfloat16):                  # autocast casts mixed dtypes itself
        assert scaled_dot_product_attention(q, q.bfloat16(), q)[0].shape == (2, 3, 4)
    with pytest.raises(ValueError, match="at least one key"):
        scaled_dot_product_attention(q, q[:, :0], q[:, :0])


def test_split_heads_of_no_tokens_and_causal_mask_lengths() -> None:
    mha = MultiHeadAttention(8, 2)
    assert mha.split_heads(torch.randn(2, 0, 8)).shape == (2, 2, 0, 4)
    with pytest.raises(ValueError, match=r"x: expected heads shaped \(B, 2, T, 4\)"):
        mha.merge_heads(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="t_q"):
        causal_mask(-1)


def test_split_and_merge_heads_functions_match_the_layer() -> None:
    x = torch.randn(2, 5, 12)
    heads = split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    assert torch.equal(heads[:, 1, 2], x[:, 2, 4:8])           # head 1, token 2 = features 4..7 of token 2
    assert torch.equal(heads, MultiHeadAttention(12, 3).split_heads(x))
    assert torch.equal(merge_heads(heads), x) and torch.equal(MultiHeadAttention(12, 3).merge_heads(heads), x)
    assert torch.equal(merge_heads(heads.contiguous()), x)
    assert split_heads(torch.randn(2, 0, 8), 2).shape == (2, 2, 0, 4)
    assert merge_heads(torch.randn(1, 2, 3, 4)).shape == (1, 3, 8)


@pytest.mark.parametrize("x, num_heads, error, message", [
    (torch.randn(2, 5, 12), 5, ValueError, r"num_heads: expected a divisor of .* D = 12 \(at least 1\), got 5"),
    (torch.randn(2, 5, 12), 0, ValueError, "num_heads: .* got 0"),
    (torch.randn(2, 5, 12), -3, ValueError, "num_heads: .* got -3"),
    (torch.randn(2, 5, 12), 2.0, TypeError, "num_heads: expected an int, got 2.0"),
    (torch.randn(2, 5, 12), True, TypeError, "num_heads: expected an int, got True"),
    (torch.randn(5, 12), 3, ValueError, r"x: expected a tensor shaped \(B, T, D\), got \(5, 12\); .* x\[None\]"),
    (torch.randn(1, 2, 5, 12), 3, ValueError, r"x: expected a tensor shaped \(B, T, D\), got \(1, 2, 5, 12\)$"),
    ([[1.0, 2.0]], 1, TypeError, "x: expected a tensor shaped .*, got a list"),
])
def test_split_heads_refuses_by_name(x, num_heads, error, message) -> None:
    with pytest.raises(error, match=message):
        split_heads(x, num_heads)


@pytest.mark.parametrize("x, error, message", [
    (torch.randn(2, 5, 12), ValueError, r"x: expected heads shaped \(B, H, T, Dh\), got \(2, 5, 12\)"),
    (torch.randn(1, 2, 5, 3, 4), ValueError, r"x: expected heads shaped \(B, H, T, Dh\), got \(1, 2, 5, 3, 4\)"),
    ((1, 2, 3, 4), TypeError, "x: expected heads shaped .*, got a tuple"),
])
def test_merge_heads_refuses_by_name(x, error, message) -> None:
    with pytest.raises(error, match=message):
        merge_heads(x)


def test_split_heads_takes_a_numpy_int() -> None:
    assert split_heads(torch.randn(1, 2, 6), np.int64(3)).shape == (1, 3, 2, 2)


# ---------------------------------------------------------------------------------------------
# blockwise_attention: the online softmax over blocks of keys gives full attention's output
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(30))
def test_blockwise_attention_matches_full_attention(seed: int) -> None:
    g = torch.Generator().manual_seed(3000 + seed)
    b, h, tq, tk, d, dv = (int(n) for n in torch.randint(1, 9, (6,), generator=g))
    q, k, v = torch.randn(b, h, tq, d, generator=g), torch.randn(b, h, tk, d, generator=g), \
        torch.randn(b, h, tk, dv, generator=g)
    expected = F.scaled_dot_product_attention(q, k, v)
    for block in (1, 2, 3, tk, tk + 5):                      # blocks that divide Tk, that do not, and one block
        out = blockwise_attention(q, k, v, block)
        assert out.shape == expected.shape
        assert (out - expected).abs().max() <= TOL, block


def test_blockwise_attention_rescales_when_the_max_grows_and_stays_finite() -> None:
    """Keys whose scores rise block after block (up to 1e4): every block raises the running max."""
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.stack([torch.linspace(-1e4, 1e4, 12), torch.linspace(1e4, -1e4, 12)], dim=1)  # (12, 2)
    v = torch.randn(12, 3)
    out = blockwise_attention(q, k, v, 5)
    assert torch.isfinite(out).all()
    assert (out - scaled_dot_product_attention(q, k, v)[0]).abs().max() <= TOL


def test_blockwise_attention_broadcasts_and_passes_gradcheck() -> None:
    g = torch.Generator().manual_seed(7)
    q = torch.randn(2, 1, 3, 4, generator=g)
    k, v = torch.randn(1, 3, 5, 4, generator=g), torch.randn(2, 3, 5, 2, generator=g)
    assert (blockwise_attention(q, k, v, 2) - scaled_dot_product_attention(q, k, v)[0]).abs().max() <= TOL
    inputs = tuple(torch.randn(2, n, 3, dtype=torch.float64, generator=g, requires_grad=True) for n in (3, 5, 5))
    assert torch.autograd.gradcheck(lambda q, k, v: blockwise_attention(q, k, v, 2), inputs)


@pytest.mark.parametrize("block, error, message", [
    (0, ValueError, "block_size: expected at least 1 key per block, got 0"),
    (-2, ValueError, "got -2"),
    (2.0, TypeError, r"block_size: expected an int \(keys per block\), got 2.0"),
    (True, TypeError, "got True"),
    (None, TypeError, "got None"),
])
def test_blockwise_attention_refuses_bad_block_sizes(block, error, message) -> None:
    x = torch.randn(1, 4, 2)
    with pytest.raises(error, match=message):
        blockwise_attention(x, x, x, block)
    assert blockwise_attention(x, x, x, np.int64(3)).shape == (1, 4, 2)


@pytest.mark.parametrize("q, k, v, error, message", [
    (torch.randn(3, 4), torch.randn(5, 6), torch.randn(5, 2), ValueError, r"last dim of q \(3, 4\)"),
    (torch.randn(3, 4), torch.randn(5, 4), torch.randn(6, 2), ValueError, "same number of keys"),
    (torch.randn(3, 4), torch.randn(0, 4), torch.randn(0, 2), ValueError, "at least one key"),
    (torch.ones(3, 4, dtype=torch.long),) * 3 + (TypeError, "floating"),
    ([[1.0]], torch.randn(1, 1), torch.randn(1, 1), TypeError, "must be tensors"),
])
def test_blockwise_attention_refuses_what_full_attention_refuses(q, k, v, error, message) -> None:
    with pytest.raises(error, match=message):
        blockwise_attention(q, k, v, 2)
    with pytest.raises(error, match=message):
        scaled_dot_product_attention(q, k, v)
