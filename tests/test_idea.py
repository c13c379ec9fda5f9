"""IDEA (Liu et al., JNUDT 2022): loss terms against hand values, attention, weak supervision.

Small synthetic tensors for the equations; real MIRFlickr-25K tags for the weak-supervision
and learning checks (region maps are extracted for a 100-image subset only, and cached).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

import hashlab
import hashlab.methods.deep.idea as idea_module
import hashlab.methods.deep.wdht  # noqa: F401  (registers "wdht")
from hashlab.losses.idea import (
    binarize,
    discrimination_loss,
    idea_loss,
    pairwise_tag_loss,
    quantization_loss,
    tag_hinge_loss,
)
from hashlab.methods.deep.idea import IDEA, IDEAA, IDEAL, context_pool, region_attention
from hashlab.methods.deep.tagged import TagSupervisedMethod

MIRFLICKR = f"{SHARED_DATA}/mirflickr25k"


def test_quantization_loss_hand_values():
    h1 = torch.tensor([[1.0, 0.0], [0.5, 0.75]])
    # item 1: -(0.25 + 0.25)/2 = -0.25; item 2: -(0 + 0.0625)/2 = -0.03125
    assert quantization_loss(h1, "sum").item() == pytest.approx(-0.28125)
    assert quantization_loss(h1, "mean").item() == pytest.approx(-0.140625)


def test_pairwise_tag_loss_hand_values():
    h1 = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # (1/l)||h1_0 - h1_1||^2 = 1/2
    same_tags = torch.tensor([[1.0, 0.0], [2.0, 0.0]])  # cos 1 -> target distance 0
    # two off-diagonal pairs, each (0.5 - 0)^2 = 0.25
    assert pairwise_tag_loss(h1, same_tags, "sum").item() == pytest.approx(0.5)
    assert pairwise_tag_loss(h1, same_tags, "mean").item() == pytest.approx(0.125)
    orthogonal = torch.tensor([[1.0, 0.0], [0.0, 3.0]])  # cos 0 -> target 0.5: exact fit
    assert pairwise_tag_loss(h1, orthogonal, "sum").item() == pytest.approx(0.0)


def test_tag_hinge_loss_hand_values():
    h2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[0.5, 0.0], [0.0, 1.0]])
    # i=0: 1 + t_1.h2_0 - t_0.h2_0 = 1 + 0 - 0.5 = 0.5; i=1: 1 + 0 - 1 = 0
    assert tag_hinge_loss(h2, t, margin=1.0, reduction="sum").item() == pytest.approx(0.5)
    assert tag_hinge_loss(h2, t, margin=1.0, reduction="mean").item() == pytest.approx(0.25)
    assert tag_hinge_loss(h2, t, margin=0.4, reduction="sum").item() == pytest.approx(0.0)


def test_discrimination_loss_hand_values():
    logits = torch.zeros(1, 4)  # uniform softmax: p = 1/4 for every tag
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0]])  # two tags -> two -log(1/4) terms
    assert discrimination_loss(logits, targets).item() == pytest.approx(2 * math.log(4))
    logits = torch.tensor([[math.log(3.0), 0.0]])  # p = (3/4, 1/4)
    assert discrimination_loss(logits, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(
        -math.log(0.75)
    )


def test_idea_loss_composes_eq6_and_idea_l_needs_no_classifier():
    g = torch.Generator().manual_seed(0)
    h1, h2, t = torch.rand(5, 8, generator=g), torch.rand(5, 3, generator=g), torch.randn(5, 3)
    logits, targets = torch.randn(5, 6), (torch.rand(5, 6) < 0.4).float()
    terms = idea_loss(h1, h2, logits, t, targets, 2.0, 3.0, 0.5, margin=0.7)
    expected = (
        2.0 * quantization_loss(h1, "mean")
        + pairwise_tag_loss(h1, t, "mean")
        + 3.0 * tag_hinge_loss(h2, t, 0.7, "mean")
        + 0.5 * discrimination_loss(logits, targets)
    )
    assert terms["total"].item() == pytest.approx(expected.item())
    no_l4 = idea_loss(h1, h2, None, t, None, lambda4=0.0)
    assert "discrimination" not in no_l4
    with pytest.raises(ValueError, match="lambda4"):
        idea_loss(h1, h2, None, t, None, lambda4=0.01)


def test_binarize_eq13():
    codes = binarize(torch.tensor([[0.1, 0.49, 0.5, 0.9]]))
    assert codes.tolist() == [[0, 0, 1, 1]] and codes.dtype == torch.uint8


def test_attention_rows_sum_to_one_and_pooling_matches_eq3():
    regions = torch.randn(3, 49, 16)
    attention = region_attention(regions)
    assert attention.shape == (3, 49, 49)
    assert torch.allclose(attention.sum(dim=-1), torch.ones(3, 49), atol=1e-5)
    maps = regions.transpose(1, 2).reshape(3, 16, 7, 7).numpy()
    expected = (regions + attention @ regions).mean(dim=1).numpy()
    assert np.allclose(context_pool(maps, attention=True), expected, atol=1e-5)
    assert np.allclose(context_pool(maps, attention=False), regions.mean(dim=1), atol=1e-6)
    # hand case: two orthogonal regions of norm 10 attend only to themselves -> x = 2 mean
    two = torch.tensor([[[10.0, 0.0], [0.0, 10.0]]])
    assert np.allclose(context_pool(two.numpy(), attention=True), [[10.0, 10.0]], atol=1e-4)


def _random_maps(n: int, channels: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, channels, 3, 3), dtype=np.float32)


def test_weakly_supervised_fit_refuses_labels_and_needs_tags():
    maps, tags = _random_maps(20), (np.random.default_rng(1).random((20, 5)) < 0.4)
    labels = np.random.default_rng(2).integers(0, 2, (20, 3))
    for name in ("idea", "idea_l", "idea_a", "wdht"):
        model = pytest.importorskip("hashlab").create(name, n_bits=8, epochs=1)
        assert model.tags.supervision == "tags"
        with pytest.raises(ValueError, match="weakly supervised"):
            model.fit(maps, labels, tags=tags, tag_vectors=np.eye(5, 4))
        with pytest.raises(ValueError, match="needs the images' tags"):
            model.fit(maps)


def test_bench_never_passes_labels_to_fit(monkeypatch):
    """The MIRFlickr bench on real tags/labels: every fit sees tags and no label array."""
    from hashlab.bench import idea as bench

    calls = []
    original_fit = TagSupervisedMethod.fit

    def spy(self, x, y=None, **kwargs):
        calls.append((self.name, y, kwargs))
        return original_fit(self, x, y, **kwargs)

    monkeypatch.setattr(TagSupervisedMethod, "fit", spy)
    # no image extraction in tests: random region maps of the right count stand in
    monkeypatch.setattr(
        "hashlab.backbones.extract_features", lambda paths, *a, **k: _random_maps(len(paths))
    )
    result = bench.run(
        [8],
        [0],
        n_query=200,
        root=__import__("pathlib").Path(MIRFLICKR),
        embeddings=("glove",),
        epochs=1,
        methods=("idea", "wdht", "lsh"),
    )
    from hashlab.data.mirflickr import load_mirflickr_images

    labels = load_mirflickr_images(MIRFLICKR).labels
    assert [c[0] for c in calls] == ["idea", "wdht"]
    for _, y, kwargs in calls:
        assert y is None
        assert kwargs["tags"].shape == (530, 1386)
        for value in kwargs.values():
            arr = np.asarray(value)
            assert arr.shape[-1:] != (labels.shape[1],), "a label-shaped array reached fit"
    assert {r["method"] for r in result["rows"]} == {"idea", "wdht", "lsh"}
    assert result["tag_coverage"]["glove/seed0"]["oov_tags"] == 230


def test_out_of_vocabulary_tags_do_not_crash(tmp_path):
    from hashlab.text import WordVectors

    vocab = ["sky", "qqqzzz", "xxyyzz"]  # two OOV tags; item 3 has only OOV tags
    vectors = WordVectors("toy", ["sky"], np.ones((1, 4)))
    tags = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [1, 0, 1]] * 5)
    maps = _random_maps(20)
    monkey = IDEA(n_bits=6, epochs=2)
    import hashlab.methods.deep.tagged as tagged

    original = tagged.load_word_vectors
    tagged.load_word_vectors = lambda source: vectors
    try:
        monkey.fit(maps, tags=tags, tag_vocab=vocab, embedding="toy")
    finally:
        tagged.load_word_vectors = original
    assert monkey.extra_config_["oov_tags"] == 2
    assert monkey.extra_config_["images_without_known_tag"] == 5
    codes = monkey.encode(maps)
    assert codes.shape == (20, 6) and set(np.unique(codes)) <= {0, 1}
    monkey.save(tmp_path / "model")
    import hashlab

    assert np.array_equal(hashlab.load(tmp_path / "model").encode(maps), codes)


def test_variants_differ_only_where_the_paper_says():
    assert IDEA(n_bits=8).hparams.lambda4 == 0.01 and IDEA(n_bits=8).hparams.attention
    assert IDEAL(n_bits=8).hparams.lambda4 == 0.0 and IDEAL(n_bits=8).hparams.attention
    assert IDEAA(n_bits=8).hparams.lambda4 == 0.01 and not IDEAA(n_bits=8).hparams.attention
    idea_l = IDEAL(n_bits=8)
    idea_l.tag_vectors_ = np.ones((10, 4), dtype=np.float32)
    network = idea_l.build_network(16)
    assert network.classifier is None  # IDEA-L has no tag classifier at all
    with pytest.raises(ValueError, match="region feature maps"):
        IDEA(n_bits=8).input_features(np.zeros((3, 16)))
    assert idea_module.IDEAConfig().hidden == 256  # Eq. 4's hidden layer


def test_idea_learns_from_real_tags_better_than_lsh():
    """Real MIRFlickr images (100, region maps cached) and tags; labels only to score."""
    from hashlab import create
    from hashlab.backbones import extract_features
    from hashlab.data.mirflickr import load_mirflickr_images
    from hashlab.metrics import evaluate
    from hashlab.text import load_glove_6b_50d, tag_embedding_matrix

    data = load_mirflickr_images(MIRFLICKR).subset(np.arange(100))
    maps = extract_features(
        data.image_paths, "efficientnet_lite0", dataset_key="mirflickr100-test",
        feature_map=True, progress=False,
    )  # fmt: skip
    tag_vectors, _ = tag_embedding_matrix(data.tag_vocab, load_glove_6b_50d())
    idea = IDEA(n_bits=16, epochs=30).fit(maps, tags=data.tags, tag_vectors=tag_vectors)
    lsh = create("lsh", n_bits=16).fit(maps.mean(axis=(2, 3)))
    # in-sample retrieval among the 100 training images: did the codes learn the tag
    # structure that the (never seen) labels share?
    idea_codes, lsh_codes = idea.encode(maps), lsh.encode(maps.mean(axis=(2, 3)))
    idea_map = evaluate(idea_codes, idea_codes, data.labels, data.labels, metrics=["map@all"])
    lsh_map = evaluate(lsh_codes, lsh_codes, data.labels, data.labels, metrics=["map@all"])
    assert idea_map["map@all"] > lsh_map["map@all"]


def test_centred_tag_embeddings_subtract_the_training_mean():
    """center_tag_embeddings: t_i minus the training items' mean t (Eq. 5, then centred)."""
    from hashlab.text import average_tag_embeddings

    rng = np.random.default_rng(0)
    tags = rng.random((30, 6)) < 0.4
    tags[:, 0] = True  # every image has a known tag
    tag_vectors = rng.normal(size=(6, 4)).astype(np.float32) + 3.0  # a shared direction
    maps = _random_maps(30)
    expected, _ = average_tag_embeddings(tags, tag_vectors)
    centred = hashlab.create("wdht", n_bits=8, epochs=1, center_tag_embeddings=True)
    centred.fit(maps, tags=tags, tag_vectors=tag_vectors)
    assert np.allclose(centred.tag_center_, expected.mean(axis=0), atol=1e-5)
    raw = hashlab.create("wdht", n_bits=8, epochs=1).fit(maps, tags=tags, tag_vectors=tag_vectors)
    assert not raw.tag_center_.any()  # the paper's t, unchanged
    extras = {"tag_vectors": torch.from_numpy(tag_vectors),
              "tag_center": torch.from_numpy(centred.tag_center_)}  # fmt: skip
    state = type("State", (), {"extras": extras})
    t = centred.batch_tag_embeddings(torch.from_numpy(tags.astype(np.float32)), state)
    assert np.allclose(t.numpy().mean(axis=0), 0.0, atol=1e-5)
