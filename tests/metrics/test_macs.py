import torch
from torch import nn

from snipit_cli.metrics.macs import count_macs


def test_macs_of_a_hand_built_conv_net():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),  # 4 out x 3 in x 9 taps x 8x8 positions
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 6, 1, stride=2),  # 6 x 4 x 1 x 4x4 positions
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 5),  # 96 x 5
    )
    model.train()
    expected = 4 * 3 * 9 * 64 + 6 * 4 * 16 + 96 * 5
    assert count_macs(model, (3, 8, 8)) == expected
    assert model.training  # mode restored


def test_grouped_conv_counts_per_group():
    depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    assert count_macs(depthwise, (8, 5, 5)) == 8 * 1 * 9 * 25


def test_zeroed_weights_still_cost_macs_dense_kernels_do_not_skip_them():
    model = nn.Linear(10, 10)
    with torch.no_grad():
        model.weight.zero_()
    assert count_macs(model, (10,)) == 100


class TokenStage(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4, bias=False)

    def forward(self, pair):
        x, token = pair
        return self.proj(x) + token


class HandsOverItsToken(nn.Module):
    """PiT's habit: an expanded Parameter goes into a submodule as its input (torch's module
    tracker asserts on that view under no_grad)."""

    def __init__(self):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 4))
        self.stage = TokenStage()

    def forward(self, x):
        return self.stage((x.flatten(1), self.token.expand(x.shape[0], -1)))


def test_a_parameter_passed_as_a_module_input_is_counted():
    assert count_macs(HandsOverItsToken(), (1, 2, 2)) == 4 * 4  # one 4x4 Linear on one sample
