"""PC-AEGAN and PC-WGAN: loss terms by hand, which player each update moves, and learning on
real images (CIFAR-10 when its JPEG copy is unpacked here, else scikit-learn's digits)."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

import hashlab
from hashlab.losses.adversarial import (
    approximate_code_loss,
    generator_adversarial_loss,
    gradient_penalty,
    pair_similarity_loss,
    wasserstein_critic_loss,
)
from hashlab.losses.cosine import cosine_cross_entropy, cosine_quantization
from hashlab.methods.deep.pc_aegan_game import AdversarialGame, GameSettings
from hashlab.methods.deep.pc_aegan_networks import Discriminator, Generator
from hashlab.metrics import evaluate
from hashlab.pipeline import encode_images


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


# -- loss terms against hand values ------------------------------------------------------------
def test_approximate_code_loss_eq6_by_hand():
    # q = 2; pair 1 similar, <h_i, h_j> / q = 1/2 -> (1 - 1/2)^2; pair 2 dissimilar, 0 -> 0
    h_i, h_j, s = t([[1, 0], [1, 1]]), t([[1, 1], [0, 0]]), t([1, 0])
    assert approximate_code_loss(h_i, h_j, s).item() == pytest.approx(0.125)
    assert approximate_code_loss(h_i, h_j, s, weights=t([2, 0])).item() == pytest.approx(0.25)
    # +-1 codes: equal codes of a similar pair and orthogonal codes of a dissimilar one cost 0
    a, b = t([[1, 1], [1, 1]]), t([[1, 1], [1, -1]])
    assert approximate_code_loss(a, b, s).item() == pytest.approx(0.0)


def test_wasserstein_critic_loss_by_hand():
    assert wasserstein_critic_loss(t([1, 3]), t([0.5, -0.5])).item() == pytest.approx(-2.0)


def test_gradient_penalty_of_a_linear_critic():
    # critic(x) = <x, (3, 4)> has gradient norm 5 everywhere: penalty (5 - 1)^2 = 16
    weight = t([3, 4])
    real, fake = t([[1, 2], [0, 0], [5, -1]]), t([[0, 1], [2, 2], [-3, 3]])
    assert gradient_penalty(lambda x: x @ weight, real, fake).item() == pytest.approx(16.0)
    # a critic with gradient norm 1 pays nothing
    assert gradient_penalty(lambda x: x @ (weight / 5), real, fake).item() == pytest.approx(0.0)


def test_pair_similarity_and_generator_losses_by_hand():
    # sigmoid(0) = 1/2 for a similar pair: log 2; sigmoid(log 3) = 3/4 for a dissimilar: log 4
    logits, s = t([0.0, math.log(3.0)]), t([1, 0])
    plain = (math.log(2.0) + math.log(4.0)) / 2
    assert pair_similarity_loss(logits, s, weights=torch.ones(2)).item() == pytest.approx(plain)
    # class-balance weights (the default): |S| / |S_1| = |S| / |S_0| = 2 here
    assert pair_similarity_loss(logits, s).item() == pytest.approx(2 * plain)
    # Eq. 10: -E[D(fake)] + BCE
    value = generator_adversarial_loss(t([1, 3]), logits, s).item()
    assert value == pytest.approx(-2.0 + 2 * plain)


def test_cosine_losses_by_hand():
    u = t([[1, 1], [1, -1]])  # cos(u_1, u_2) = 0
    s = t([[1, 0], [0, 1]])
    # diagonal: cos 1, similar: softplus(10) - 10 = log(1 + e^-10); off-diagonal: log 2;
    # every class-balance weight is 4 / 2 = 2, so the mean is the sum of the two kinds
    expected = math.log1p(math.exp(-10.0)) + math.log(2.0)
    assert cosine_cross_entropy(u, u, s, alpha=10.0).item() == pytest.approx(expected)
    assert cosine_quantization(t([[0.5, -0.5]])).item() == pytest.approx(0.0, abs=1e-12)
    assert cosine_quantization(t([[1, 0]])).item() == pytest.approx(1 - 1 / math.sqrt(2))


def test_hash_losses_of_both_methods_by_hand():
    """L_F = L_Fc + beta L_Fq (Eq. 14) with Cauchy (PC-AEGAN) or cosine (PC-WGAN) terms."""
    u = torch.tensor([[1.0, 1.0], [1.0, -1.0]])  # d = (2/2)(1 - 0) = 1 between them; |u| = 1s
    labels = torch.eye(2)
    aegan = hashlab.create("pc_aegan", n_bits=2, gamma=20.0, quantization_weight=0.1)
    # similar pairs at d = 0 cost 0; dissimilar ones log(1 + 20 / 1), weight 2, half the pairs
    assert aegan.hash_loss(u, labels).item() == pytest.approx(math.log(21.0), rel=1e-4)
    wgan = hashlab.create("pc_wgan", n_bits=2)
    expected = math.log1p(math.exp(-10.0)) + math.log(2.0)
    assert wgan.hash_loss(u, labels).item() == pytest.approx(expected, rel=1e-5)
    assert wgan.hparams.code_discriminator is False and aegan.hparams.code_discriminator


# -- networks and which player each update moves ------------------------------------------------
@pytest.mark.parametrize("size", [32, 64])
def test_networks_shapes_at_both_sizes(size):
    generator, discriminator = Generator(8, 4, size, channels=4), Discriminator(size, channels=4)
    images = generator(torch.rand(3, 8), torch.randn(3, 4))
    assert images.shape == (3, 3, size, size)
    assert images.abs().max() <= 1.0  # Tanh
    scores, embedding = discriminator(images)
    assert scores.shape == (3,) and embedding.shape[0] == 3
    assert discriminator.pair_logits(embedding, embedding).shape == (3, 3)
    convs = [m for m in discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5 and all(c.kernel_size == (4, 4) for c in convs)


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def _changed(module, before):
    return any(not torch.equal(p, b) for p, b in zip(module.parameters(), before, strict=True))


def test_each_update_moves_only_its_own_players():
    torch.manual_seed(0)
    labels = torch.eye(3)[torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])]
    settings = GameSettings(n_bits=6, image_size=32, noise_dim=4, generator_channels=4,
                            discriminator_channels=4, code_hidden=8)  # fmt: skip
    game = AdversarialGame(settings, labels, torch.device("cpu"))
    hash_network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 6),
                                       torch.nn.Tanh())  # fmt: skip
    players = {"G": game.generator, "D": game.discriminator, "C": game.code_critic,
               "F": hash_network}  # fmt: skip
    indices = torch.tensor([0, 1, 2, 3])
    real = torch.rand(4, 3, 32, 32) * 2 - 1

    def moved():
        return {name for name, module in players.items() if _changed(module, before[name])}

    before = {name: _snapshot(module) for name, module in players.items()}
    codes_before = game.code_logits.detach().clone()
    embedding = game.update_discriminator(real, indices, {})
    assert moved() == {"D"} and torch.equal(game.code_logits, codes_before)

    before = {name: _snapshot(module) for name, module in players.items()}
    random_codes = game.random_codes(4)
    game.update_code_critic(indices, random_codes, {})
    assert moved() == {"C"} and torch.equal(game.code_logits, codes_before)

    def hash_loss_of_fakes(fakes, fake_labels):  # gives F gradients, which G's step must not use
        outputs = hash_network(fakes)
        return -(outputs @ outputs.T * (fake_labels @ fake_labels.T)).mean()

    before = {name: _snapshot(module) for name, module in players.items()}
    game.update_generator(indices, embedding, random_codes, hash_loss_of_fakes, {})
    assert moved() == {"G"}
    changed_rows = (game.code_logits != codes_before).any(dim=1)
    assert changed_rows[:4].all() and not changed_rows[4:].any()  # H: the batch's codes only


def test_stage1_codes_follow_the_pairwise_similarity():
    """Eq. 6 on sampled pairs: same-class codes end up closer than different-class ones."""
    torch.manual_seed(0)
    labels = torch.eye(4)[torch.arange(40) % 4]
    settings = GameSettings(n_bits=12, code_pretrain_steps=200, code_pairs=512)
    game = AdversarialGame(settings, labels, torch.device("cpu"))
    losses = game.pretrain_codes()
    assert losses[-1] < 0.7 * losses[0]
    codes = game.binary_codes().float()
    hamming = torch.cdist(codes, codes, p=1)
    same = labels @ labels.T > 0
    assert hamming[same].mean() + 2 < hamming[~same].mean()


# -- learning on real images -------------------------------------------------------------------
def _real_images():
    """(pixels (N, 32, 32, 3) uint8, labels): 4 CIFAR-10 classes if unpacked here, else digits."""
    from hashlab.backbones.cache import cache_dir

    if (cache_dir() / "data" / "cifar10_jpg" / ".complete").is_file():
        from hashlab.data.cifar10 import load_cifar10
        from hashlab.data.pixels import dataset_pixels

        data = load_cifar10(SHARED_DATA / "cifar10_jpg.tar.gz")
        labels = np.asarray(data.labels)
        keep = np.concatenate([np.flatnonzero(labels == c)[:100] for c in (0, 1, 6, 7)])
        return dataset_pixels(data.subset(keep), 32), labels[keep]
    from hashlab.data.digits import load_digits_dataset
    from hashlab.data.pixels import dataset_pixels

    digits = load_digits_dataset()
    keep = np.flatnonzero(digits.labels < 4)[:400]
    return dataset_pixels(digits.subset(keep), 32), digits.labels[keep]


def test_short_run_on_real_images_improves_map_within_radius_2(tmp_path, monkeypatch):
    from hashlab.train.trainer import seed_everything

    monkeypatch.setenv("HASHLAB_CACHE", str(tmp_path / "cache"))  # features of test arrays
    pixels, labels = _real_images()
    order = np.random.default_rng(0).permutation(len(pixels))
    query, train = order[:80], order[80:]
    # a small GAN and few steps: the point is that the whole game runs and F learns from it
    model = hashlab.create("pc_aegan", n_bits=16, epochs=3, batch_size=32, device="cpu",
                           code_pretrain_steps=50, generated_per_batch=8, generator_channels=8,
                           discriminator_channels=8, generator_hash_loss=True,
                           sample_dir=str(tmp_path / "figures"))  # fmt: skip
    features = model._inputs(pixels, for_training=False)[0].features.numpy()

    # the untrained state: the hash layer as the Trainer builds it (same seed), on the
    # training items' standardised features
    seed_everything(model.seed)
    untrained = model._network(features.shape[1])
    untrained.feature_mean.copy_(torch.from_numpy(features[train].mean(0)))
    untrained.feature_std.copy_(torch.from_numpy(features[train].std(0) + 1e-8))
    with torch.no_grad():
        before = [model.binarize(untrained(torch.from_numpy(features[rows]))) for rows in
                  (query, train)]  # fmt: skip
    score_before = evaluate(before[0], before[1], labels[query], labels[train],
                            metrics=["map@r2"])["map@r2"]  # fmt: skip

    model.fit(pixels[train], labels[train])
    score_after = evaluate(model.encode(pixels[query]), model.encode(pixels[train]),
                           labels[query], labels[train], metrics=["map@r2"])["map@r2"]  # fmt: skip
    assert score_after > score_before + 0.1, (score_before, score_after)
    # the game ran, and its figures were written during training
    assert model.extra_config_["adversarial"]["steps"] > 0
    figures = tmp_path / "figures"
    assert (figures / "samples_epoch001.png").is_file() and (figures / "samples.png").is_file()
    assert (figures / "loss_curves.png").is_file()
    assert "hash_of_fakes" in model.extra_config_["adversarial"]["last_100_steps_mean"]
    # saved model reopens and encodes the same
    model.save(tmp_path / "model")
    again = hashlab.load(tmp_path / "model")
    np.testing.assert_array_equal(again.encode(pixels[query]), model.encode(pixels[query]))


@pytest.mark.parametrize("method", ["pc_aegan", "pc_wgan"])
def test_cli_train_writes_the_sample_grid_and_encodes_images(method, tmp_path, monkeypatch,
                                                             capsys):  # fmt: skip
    """hashlab train --method pc_aegan / pc_wgan on a folder of images, then hashlab encode."""
    from PIL import Image

    from hashlab.cli import main
    from hashlab.data.digits import load_digits_dataset

    monkeypatch.setenv("HASHLAB_CACHE", str(tmp_path / "cache"))
    digits = load_digits_dataset()
    for digit in range(3):
        (tmp_path / "images" / str(digit)).mkdir(parents=True)
        for i in np.flatnonzero(digits.labels == digit)[:30]:
            Image.fromarray(digits.images[i]).save(tmp_path / "images" / str(digit) / f"{i}.png")
    model_dir = tmp_path / "model"
    code = main(["train", "--method", method, "--dataset", "folder", "--root",
                 str(tmp_path / "images"), "--bits", "8", "--epochs", "1", "--backbone",
                 "small_cnn", "--device", "cpu", "--out", str(model_dir),
                 "--param", "generator_channels=4", "--param", "discriminator_channels=4",
                 "--param", "code_pretrain_steps=5", "--param", "batch_size=16"])  # fmt: skip
    assert code == 0
    assert "test map@all" in capsys.readouterr().out
    config = json.loads((model_dir / "config.json").read_text())
    assert config["method"] == method and config["extra"]["adversarial"]["steps"] > 0
    assert (tmp_path / "model.ckpt" / "samples_epoch001.png").is_file()
    assert (tmp_path / "model.ckpt" / "loss_curves.png").is_file()
    codes_file = tmp_path / "codes.npy"
    assert main(["encode", str(model_dir), "--images", str(tmp_path / "images"),
                 "--out", str(codes_file)]) == 0  # fmt: skip
    paths = codes_file.with_suffix(".paths.txt").read_text().split()
    np.testing.assert_array_equal(np.load(codes_file)[:5],
                                  encode_images(hashlab.load(model_dir), paths[:5]))  # fmt: skip


def test_finetune_mode_trains_the_backbone_on_real_and_generated_images(tmp_path, monkeypatch):
    """The paper's configuration in miniature: the backbone inside F, fine-tuned end to end."""
    from hashlab.backbones import create_backbone
    from hashlab.data.digits import load_digits_dataset
    from hashlab.data.pixels import dataset_pixels

    monkeypatch.setenv("HASHLAB_CACHE", str(tmp_path / "cache"))
    digits = load_digits_dataset()
    keep = np.flatnonzero(digits.labels < 3)[:96]
    pixels, labels = dataset_pixels(digits.subset(keep), 32), digits.labels[keep]
    model = hashlab.create("pc_aegan", n_bits=8, epochs=1, batch_size=16, device="cpu",
                           mode="finetune", backbone="small_cnn", hash_input_size=48,
                           code_pretrain_steps=5, generator_channels=4, discriminator_channels=4,
                           generated_per_batch=8)  # fmt: skip
    model.fit(pixels, labels)
    fresh = create_backbone("small_cnn").module.state_dict()
    tuned = {k[len("backbone.net."):]: v for k, v in model.network_.state_dict().items()
             if k.startswith("backbone.net.")}  # fmt: skip
    assert tuned.keys() == fresh.keys()
    assert any(not torch.equal(tuned[k], fresh[k]) for k in fresh)
    codes = model.encode(pixels)
    assert codes.shape == (96, 8)
    model.save(tmp_path / "model")
    np.testing.assert_array_equal(hashlab.load(tmp_path / "model").encode(pixels), codes)
    with pytest.raises(ValueError, match="encodes images"):
        model.encode(np.zeros((2, 32), dtype=np.float32))
