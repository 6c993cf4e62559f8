"""The on-device batch augmentation (pnl_da/data/augment.py), checked against its documentation."""

import pytest
import torch

from pnl_da.config import AugmentConfig
from pnl_da.data.augment import augment, random_erase, random_flip
from pnl_da.data.base import DomainData
from pnl_da.data.streams import DomainStream, Normalizer
from tests.conftest import make_cfg


def images(n=16, channels=1, height=28, width=28, seed=0):
    """Float images in [0, 1] without any symmetry (a flip or a shift shows)."""
    return torch.rand(n, channels, height, width, generator=torch.Generator().manual_seed(seed))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def changed_per_image(a, b):
    return [not torch.equal(x, y) for x, y in zip(a, b)]


@pytest.mark.parametrize("view", ["weak", "strong"])
def test_digits_weak_and_strong_views_change_every_image(view):
    aug = make_cfg().data[view]  # the shipped digits views
    x = images()
    out = augment(x, aug, gen())
    assert out.shape == x.shape and out.dtype == x.dtype
    assert all(changed_per_image(x, out))
    assert out.min() >= 0 and out.max() <= 1


def test_stream_serves_raw_weak_and_strong_views_that_differ():
    cfg = make_cfg()
    raw = (images(8, seed=3) * 255).round().to(torch.uint8)
    data = DomainData(raw, torch.arange(8) % 10, "fake", "train")
    normalize = Normalizer([0.5], [0.5])
    stream = DomainStream(data, 8, 0, torch.device("cpu"), normalize,
                          {"weak": cfg.data.weak, "strong": cfg.data.strong})
    views, labels = stream.next(("none", "weak", "strong"))
    # the "none" view is the batch itself, normalised: (x - 0.5) / 0.5 of x in [0, 1]
    order = labels.argsort()  # labels are the image indices here
    plain = views["none"][order]
    assert torch.allclose(plain, (raw.float() / 255 - 0.5) / 0.5)
    # the stream says which images it served (FlexMatch keeps a memory per image)
    assert torch.equal(stream.last_index, labels)
    assert all(changed_per_image(views["none"], views["weak"]))
    assert all(changed_per_image(views["none"], views["strong"]))
    assert all(changed_per_image(views["weak"], views["strong"]))


def test_no_augmentation_configured_returns_the_images_unchanged():
    x = images()
    assert torch.equal(augment(x, AugmentConfig(), gen()), x)


def test_flip_probability_zero_keeps_and_one_mirrors_every_image_exactly():
    x = images()
    assert torch.equal(random_flip(x, 0.0, gen()), x)
    assert torch.equal(random_flip(x, 1.0, gen()), x.flip(3))
    assert torch.equal(augment(x, AugmentConfig(flip=1.0), gen()), x.flip(3))


def test_flip_at_one_half_mirrors_some_images_and_keeps_the_others():
    x = images(64)
    out = random_flip(x, 0.5, gen())
    mirrored = [torch.equal(o, i.flip(2)) for o, i in zip(out, x)]
    kept = [torch.equal(o, i) for o, i in zip(out, x)]
    assert all(m != k for m, k in zip(mirrored, kept))  # each image is one or the other
    assert any(mirrored) and any(kept)  # all-or-nothing has probability 2 ** -63


@pytest.mark.parametrize("height,width", [(30, 30), (31, 40), (2, 5)])
def test_erase_blanks_one_square_of_a_third_of_the_height_with_zeros(height, width):
    side = max(1, height // 3)
    x = 0.25 + 0.5 * images(12, channels=3, height=height, width=width)  # no pixel is 0
    out = random_erase(x, 1.0, gen())
    for before, after in zip(x, out):
        blank = after == 0
        assert torch.equal(blank[0], blank[1]) and torch.equal(blank[0], blank[2])
        rows = blank[0].any(dim=1).nonzero().flatten()
        cols = blank[0].any(dim=0).nonzero().flatten()
        assert len(rows) == side and len(cols) == side
        assert rows.diff().eq(1).all() and cols.diff().eq(1).all()  # contiguous
        assert int(blank[0].sum()) == side * side  # the whole square, nothing else
        assert torch.equal(after[~blank], before[~blank])  # the rest is untouched


def test_erase_probability_zero_changes_nothing_and_one_half_erases_some():
    x = 0.25 + 0.5 * images(64)
    assert torch.equal(random_erase(x, 0.0, gen()), x)
    erased = [bool((o == 0).any()) for o in random_erase(x, 0.5, gen())]
    assert any(erased) and not all(erased)
    through_augment = augment(x, AugmentConfig(erase=1.0), gen())
    assert all(bool((o == 0).any()) for o in through_augment)


def test_translation_moves_the_content_at_most_the_documented_fraction_of_the_side():
    size, translate = 32, 0.1
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    blob = torch.exp(-((ys - 15.5) ** 2 + (xs - 15.5) ** 2) / 8.0).float()
    x = blob.expand(32, 1, size, size).contiguous()

    def centre(batch):
        mass = batch.sum(dim=(1, 2, 3))
        return torch.stack([(batch * ys).sum(dim=(1, 2, 3)) / mass,
                            (batch * xs).sum(dim=(1, 2, 3)) / mass], dim=1)

    out = augment(x, AugmentConfig(translate=translate), gen())
    moved = centre(out) - centre(x)
    assert moved.abs().max() <= translate * size + 0.05  # uniform in [-t, t] of the side
    assert moved.abs().max() > translate * size / 4  # and it does move (32 draws per axis)
    assert torch.allclose(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)), rtol=1e-3)


def test_contrast_keeps_each_image_mean_and_scales_its_deviations_within_the_range():
    amount = 0.5
    x = 0.4 + 0.2 * images()  # in [0.4, 0.6]: a factor up to 1.5 never clamps
    out = augment(x, AugmentConfig(contrast=amount), gen())
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(out.mean(dim=(1, 2, 3), keepdim=True), mean, atol=1e-6)
    deviation, stretched = x - mean, out - mean
    factor = (stretched * deviation).sum(dim=(1, 2, 3), keepdim=True) / \
        (deviation ** 2).sum(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(stretched, factor * deviation, atol=1e-6)  # one factor per image
    assert factor.min() >= 1 - amount - 1e-6 and factor.max() <= 1 + amount + 1e-6
    assert factor.flatten().std() > 0  # each image draws its own factor


def test_brightness_shifts_each_image_by_one_amount_within_the_range():
    amount = 0.2
    x = 0.3 + 0.4 * images()  # in [0.3, 0.7]: a shift up to 0.2 never clamps
    shift = (augment(x, AugmentConfig(brightness=amount), gen()) - x).flatten(1)
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-6)
    assert shift.abs().max() <= amount + 1e-6
    assert shift[:, 0].std() > 0


def test_solarize_at_probability_one_inverts_exactly_the_pixels_above_one_half():
    x = images()
    out = augment(x, AugmentConfig(solarize=1.0), gen())
    assert torch.equal(out, torch.where(x > 0.5, 1 - x, x))
    assert torch.equal(augment(x, AugmentConfig(solarize=1e-9), gen()), x)


def test_the_same_generator_seed_repeats_the_augmentation_and_another_seed_does_not():
    aug = make_cfg().data.strong
    x = images()
    first, again = augment(x, aug, gen(5)), augment(x, aug, gen(5))
    assert torch.equal(first, again)
    assert all(changed_per_image(first, augment(x, aug, gen(6))))
    # the generator advances: a second batch from the same generator gets new draws
    g = gen(5)
    augment(x, aug, g)
    assert all(changed_per_image(first, augment(x, aug, g)))


def test_the_global_torch_seed_does_not_change_the_augmentation():
    aug = make_cfg().data.strong
    x = images()
    torch.manual_seed(1)
    first = augment(x, aug, gen(5))
    torch.manual_seed(2)
    assert torch.equal(first, augment(x, aug, gen(5)))


def test_rand_augment_gives_each_image_its_number_of_ops_drawn_from_those_set():
    # RandAugment: N of the configured ops (and identity) per image, drawn at random; the
    # others leave the image alone. Contrast alone set, one op per image: about half the
    # images get it, the others (identity drawn) come back unchanged.
    from pnl_da.data.augment import rand_choice

    aug = AugmentConfig(contrast=0.9, rand_ops=1)
    x = images(n=400)
    out = augment(x, aug, gen(1))
    chosen = rand_choice(aug, 400, gen(1), x.device)["contrast"]
    changed = torch.tensor(changed_per_image(x, out))
    assert torch.equal(changed, chosen)
    assert 150 < int(chosen.sum()) < 250
    # two of four configured ops per image (three and identity): every image gets exactly two
    aug = AugmentConfig(rotate=20.0, contrast=0.5, brightness=0.2, rand_ops=2)
    masks = rand_choice(aug, 400, gen(2), x.device)
    drawn = sum(masks[op].long() for op in ("rotate", "contrast", "brightness"))
    assert set(drawn.tolist()) == {1, 2}  # identity takes the second place of some images
    assert not masks["shear"].any() and not masks["solarize"].any()  # not set: never drawn
    assert torch.equal(augment(x, aug, gen(3)), augment(x, aug, gen(3)))  # reproducible


def test_rand_augment_keeps_cutout_on_every_image():
    aug = AugmentConfig(contrast=0.5, erase=1.0, rand_ops=1)
    out = augment(images(n=32) + 0.5, aug, gen(0))  # no pixel is 0 before the erase
    assert all((img == 0).any() for img in out)
