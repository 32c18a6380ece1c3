"""The image captioner of notebook 04: shapes, causality, teacher forcing, greedy decoding."""
from __future__ import annotations

import pytest
import torch

from course_utils import captioning
from course_utils.captioning import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    ImageCaptioner,
    caption_loss,
    greedy_decode,
    greedy_step,
    teacher_forcing_pairs,
)
from course_utils.imagetext import CaptionVocab, vocab

VOCAB = 12


def _model(max_len: int = 8) -> ImageCaptioner:
    torch.manual_seed(0)
    return ImageCaptioner(VOCAB, width=32, depth=1, heads=4, max_len=max_len).eval()


def test_forward_shapes():
    model = _model()
    logits = model(torch.rand(3, 1, 28, 28), torch.randint(3, VOCAB, (3, 5)))
    assert logits.shape == (3, 5, VOCAB)
    memory = model.encode(torch.rand(2, 1, 28, 28))
    assert memory.shape == (2, 16, 32)
    _, weights = model.decode(torch.randint(3, VOCAB, (2, 4)), memory, return_attention=True)
    assert weights.shape == (2, 4, 16)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4), atol=1e-5)


def test_decoder_is_causal():
    """Changing a later word must not change the predictions at earlier positions."""
    model = _model()
    images = torch.rand(2, 1, 28, 28)
    tokens = torch.randint(3, VOCAB, (2, 6))
    changed = tokens.clone()
    changed[:, 4:] = (changed[:, 4:] + 1 - 3) % (VOCAB - 3) + 3
    with torch.no_grad():
        a, b = model(images, tokens), model(images, changed)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-5)
    assert not torch.allclose(a[:, 4:], b[:, 4:], atol=1e-5)


def test_decoder_uses_the_image():
    model = _model()
    tokens = torch.randint(3, VOCAB, (2, 5))
    with torch.no_grad():
        assert not torch.allclose(model(torch.rand(2, 1, 28, 28), tokens), model(torch.rand(2, 1, 28, 28), tokens))


def test_teacher_forcing_pairs_and_loss_ignore_padding():
    ids = torch.tensor([[BOS_ID, 5, 6, EOS_ID, PAD_ID]])
    inputs, targets = teacher_forcing_pairs(ids)
    assert inputs.tolist() == [[BOS_ID, 5, 6, EOS_ID]] and targets.tolist() == [[5, 6, EOS_ID, PAD_ID]]
    logits = torch.zeros(1, 4, VOCAB)
    logits[0, 3, PAD_ID] = -50.0                    # a terrible score at the padded target: must not count
    assert torch.isclose(caption_loss(logits, targets), torch.log(torch.tensor(float(VOCAB))))


def test_greedy_decode_learns_to_copy_a_fixed_caption():
    """A few steps of teacher forcing on one caption: greedy decoding then writes it back, stopping at <eos>."""
    torch.manual_seed(0)
    model = ImageCaptioner(VOCAB, width=32, depth=1, heads=4, max_len=8)
    ids = torch.tensor([[BOS_ID, 5, 7, 9, EOS_ID, PAD_ID]]).repeat(4, 1)
    images = torch.rand(4, 1, 28, 28)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    inputs, targets = teacher_forcing_pairs(ids)
    for _ in range(60):
        loss = caption_loss(model(images, inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.train()
    out = greedy_decode(model, images, batch_size=3)
    assert model.training                            # mode restored
    assert out.shape == (4, 8) and out.dtype == torch.long
    assert out[:, :5].tolist() == [[BOS_ID, 5, 7, 9, EOS_ID]] * 4
    assert (out[:, 5:] == PAD_ID).all()


def test_greedy_decode_respects_max_len():
    out = greedy_decode(_model(max_len=8), torch.rand(2, 1, 28, 28), max_len=3)
    assert out.shape == (2, 3) and (out[:, 0] == BOS_ID).all()


def test_special_token_ids_are_the_vocabularys():
    """The captioner uses the ids that CaptionVocab writes; the vocabulary module owns them."""
    assert (captioning.PAD_ID, captioning.BOS_ID, captioning.EOS_ID) == (vocab.PAD_ID, vocab.BOS_ID, vocab.EOS_ID)
    words = CaptionVocab(["seven"]).words
    assert (words[PAD_ID], words[BOS_ID], words[EOS_ID]) == ("<pad>", "<bos>", "<eos>")


# ---------------------------------------------------------------------------------------------
# Bad input is refused by name, not answered with an error from inside torch
# ---------------------------------------------------------------------------------------------

def test_teacher_forcing_pairs_needs_captions_of_two_tokens_or_more():
    """One caption (L,) used to raise "too many indices for tensor"; L = 1 gave empty pairs and a NaN loss."""
    with pytest.raises(ValueError, match=r"ids: expected token ids shaped \(B, L\) \(one caption: ids\[None\]\)"):
        teacher_forcing_pairs(torch.tensor([BOS_ID, 5, EOS_ID]))
    with pytest.raises(ValueError, match="at least 2 tokens"):
        teacher_forcing_pairs(torch.tensor([[BOS_ID]]))
    with pytest.raises(TypeError, match=r"ids: expected int64 \(or int32\) token ids"):
        teacher_forcing_pairs(torch.zeros(2, 4))


def test_caption_loss_refuses_mismatched_targets_and_all_padding():
    logits = torch.zeros(2, 4, VOCAB)
    with pytest.raises(ValueError, match=r"targets: expected one id per position of the logits, \(2, 4\)"):
        caption_loss(logits, torch.ones(2, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match=rf"targets: expected ids in \[0, {VOCAB}\)"):
        caption_loss(logits, torch.full((2, 4), VOCAB))
    with pytest.raises(ValueError, match="every position is padding"):
        caption_loss(logits, torch.full((2, 4), PAD_ID))
    assert torch.isfinite(caption_loss(logits, torch.ones(2, 4, dtype=torch.int32)))


def test_greedy_step_needs_a_bool_finished_per_caption():
    """An integer `finished` used to fail in torch.where ("expected condition to be a boolean tensor")."""
    with pytest.raises(ValueError, match=r"finished: expected a bool tensor \(3,\)"):
        greedy_step(torch.randn(3, VOCAB), torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match=r"finished: expected a bool tensor \(3,\)"):
        greedy_step(torch.randn(3, VOCAB), torch.tensor([False, True]))
    with pytest.raises(ValueError, match=r"logits: expected the last position's floating-point scores \(B, V\)"):
        greedy_step(torch.randn(3, 2, VOCAB), torch.zeros(3, dtype=torch.bool))


def test_greedy_decode_refuses_no_images_and_batch_size_zero():
    """No images used to fail in torch.cat(), batch_size=0 in range()."""
    model = _model()
    with pytest.raises(ValueError, match=r"images: expected \(B, 1, 28, 28\) with B >= 1, got \(0, 1, 28, 28\)"):
        greedy_decode(model, torch.rand(0, 1, 28, 28))
    with pytest.raises(ValueError, match="batch_size: expected an int of at least 1, got 0"):
        greedy_decode(model, torch.rand(2, 1, 28, 28), batch_size=0)
    with pytest.raises(ValueError, match="max_len: expected an int of at least 1, got 0"):
        greedy_decode(model, torch.rand(2, 1, 28, 28), max_len=0)


def test_decoder_refuses_unknown_ids_and_memory_of_another_batch():
    """An id outside the vocabulary used to raise an IndexError inside the embedding (a device assert on a GPU)."""
    model = _model()
    memory = model.encode(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match=rf"tokens: expected ids in \[0, {VOCAB}\) .* got values from 0 to {VOCAB}"):
        model.decode(torch.tensor([[0, VOCAB], [1, 2]]), memory)
    with pytest.raises(ValueError, match=r"memory: expected image tokens \(3, N >= 1, 32\)"):
        model.decode(torch.ones(3, 4, dtype=torch.int64), memory)
    with pytest.raises(ValueError, match=r"images: .* give 49 image tokens, more than the 16"):
        model.encode(torch.rand(2, 1, 56, 56))
    with pytest.raises(ValueError, match=r"pad_mask: expected bool \(B, L\) = \(2, 4\)"):
        model.blocks[0](torch.randn(2, 4, 32), memory, torch.ones(2, 4, dtype=torch.int64))
