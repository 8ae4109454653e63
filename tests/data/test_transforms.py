"""``ToModelInput``: uint8 images to the channels, size and normalisation a model expects.

Expected values are worked out by hand in the comments.
"""

from __future__ import annotations

import pytest
import torch

from snipit_cli.data.transforms import ToModelInput


def test_grey_to_three_channels_normalised_per_channel() -> None:
    image = torch.tensor([[[0, 255], [51, 102]]], dtype=torch.uint8)  # /255: 0, 1, 0.2, 0.4
    transform = ToModelInput((3, 2, 2), mean=(0.5, 0.4, 0.3), std=(0.5, 0.25, 0.1))

    out = transform(image)

    expected = torch.tensor(
        [
            [[-1.0, 1.0], [-0.6, -0.2]],  # (v - 0.5) / 0.5
            [[-1.6, 2.4], [-0.8, 0.0]],  # (v - 0.4) / 0.25
            [[-3.0, 7.0], [-1.0, 1.0]],  # (v - 0.3) / 0.1
        ]
    )
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_rgb_to_one_channel_uses_luma_weights() -> None:
    # pixel 0 is pure red, pixel 1 is green + blue
    image = torch.tensor([[[255, 0]], [[0, 255]], [[0, 255]]], dtype=torch.uint8)
    transform = ToModelInput((1, 1, 2), mean=(0.5,), std=(0.5,))

    out = transform(image)

    # luma = 0.2989 R + 0.587 G + 0.114 B: 0.2989 and 0.701; then (v - 0.5) / 0.5
    expected = torch.tensor([[[(0.2989 - 0.5) / 0.5, (0.701 - 0.5) / 0.5]]])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_rgb_stays_rgb_when_the_model_takes_three_channels() -> None:
    image = torch.tensor([[[255]], [[0]], [[51]]], dtype=torch.uint8)

    out = ToModelInput((3, 1, 1), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))(image)

    torch.testing.assert_close(out, torch.tensor([[[1.0]], [[0.0]], [[0.2]]]), rtol=0, atol=1e-6)


def test_upsampling_is_bilinear_with_half_pixel_centres() -> None:
    image = torch.tensor([[[0, 255]]], dtype=torch.uint8)

    out = ToModelInput((1, 1, 4), mean=(0.0,), std=(1.0,))(image)

    # output centres map to input x = -0.25, 0.25, 0.75, 1.25 (clamped to 0 and 1)
    torch.testing.assert_close(out, torch.tensor([[[0.0, 0.25, 0.75, 1.0]]]), rtol=0, atol=1e-6)


def test_downsampling_is_antialiased() -> None:
    image = torch.tensor([[[0, 0, 255, 255]] * 2], dtype=torch.uint8)  # (1, 2, 4)

    out = ToModelInput((1, 2, 2), mean=(0.0,), std=(1.0,))(image)

    # 2x down with a triangle filter of radius 2 centred at x = 1: inputs at 0.5, 1.5, 2.5
    # weigh 0.75, 0.75, 0.25 -> 0.25 / 1.75 = 1/7 of the bright half (and 6/7 mirrored).
    expected = torch.tensor([[[1 / 7, 6 / 7], [1 / 7, 6 / 7]]])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", [(3, 16, 16), (1, 5, 7)])
def test_resize_to_requested_shape_keeps_constant_images_constant(size) -> None:
    image = torch.full((1, 28, 28), 51, dtype=torch.uint8)  # 0.2 everywhere

    out = ToModelInput(size, mean=(0.1,) * size[0], std=(0.5,) * size[0])(image)

    assert out.shape == size
    torch.testing.assert_close(out, torch.full(size, 0.2), rtol=0, atol=1e-5)  # (0.2-0.1)/0.5
