"""The image captioner of notebook 04: shapes, causality, teacher forcing, greedy decoding."""
from __future__ import annotations

import torch

from course_utils.captioning import (BOS_ID, EOS_ID, PAD_ID, ImageCaptioner, caption_loss, greedy_decode,
                                     teacher_forcing_pairs)

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
