"""Disconnection counts and the path check on hand-built models, counted by hand."""

import pytest
import torch
from torch import nn

from snipit_cli.metrics.connectivity import connectivity, input_reaches_output, layer_connectivity


def _mlp(w1: torch.Tensor, w2: torch.Tensor) -> nn.Sequential:
    """Linear(4, 3) -> ReLU -> Linear(3, 2) with the given weights (biases as initialised)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.copy_(w1)
        model[2].weight.copy_(w2)
    return model


def _counts(measured) -> list[tuple[str, int, int, int]]:
    return [(r.name, r.units, r.no_incoming, r.unused_inputs) for r in measured.layers]


def _counts_of(layer: nn.Module) -> tuple[int, int, int]:
    r = layer_connectivity("x", layer)
    return r.units, r.no_incoming, r.unused_inputs


def test_linear_rows_and_columns_counted_by_hand():
    w1 = torch.ones(3, 4)
    w1[1] = 0  # hidden unit 1 has no incoming weight
    w1[:, 2] = 0  # input feature 2 is read by nothing
    w2 = torch.ones(2, 3)
    w2[:, 0] = 0  # hidden unit 0 feeds nothing
    measured = connectivity(_mlp(w1, w2), (4,))
    assert _counts(measured) == [("0", 3, 1, 1), ("2", 2, 0, 1)]
    assert (measured.units, measured.no_incoming, measured.unused_inputs) == (5, 1, 2)
    assert measured.layers_cut == 0 and measured.path is True  # features 0, 1, 3 -> unit 2 -> out


def test_grouped_conv_reads_each_input_through_its_own_group():
    conv = nn.Conv2d(4, 6, 1, groups=2)  # weight (6, 2, 1, 1): outputs 0-2 read inputs 0-1
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.weight[0:3, 1] = 0  # input 1 (group 0, column 1) unused
        conv.weight[3:6, 0] = 0  # input 2 (group 1, column 0) unused
        conv.weight[5] = 0  # output 5 has no input
    # Column by column over all rows, ignoring groups, would find no unused input.
    assert _counts_of(conv) == (6, 1, 2)


def test_depthwise_conv_channel_without_its_kernel():
    conv = nn.Conv2d(4, 4, 3, groups=4)  # weight (4, 1, 3, 3)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.weight[2] = 0  # channel 2: no incoming weight, and input 2 read by nothing
        conv.weight[0, 0, 1, 1] = 0  # one tap of channel 0: still connected
    assert _counts_of(conv) == (4, 1, 1)


def test_transposed_conv_is_the_mirror_image():
    conv = nn.ConvTranspose2d(2, 6, 1, groups=2)  # weight (in 2, out/groups 3, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.weight[0] = 0  # input 0 unused, so outputs 0-2 (its group) have no input
    assert _counts_of(conv) == (6, 3, 1)


def test_conv1d_and_conv3d_count_like_conv2d():
    for conv in (nn.Conv1d(3, 2, 3), nn.Conv3d(3, 2, 3)):
        with torch.no_grad():
            conv.weight.fill_(1.0)
            conv.weight[:, 1] = 0
        assert _counts_of(conv) == (2, 0, 1)


def test_kept_units_that_do_not_meet_cut_every_path():
    w1 = torch.zeros(3, 4)
    w1[0] = 1.0  # only hidden unit 0 has inputs
    w2 = torch.zeros(2, 3)
    w2[:, 1] = 1.0  # only hidden unit 1 has outputs
    measured = connectivity(_mlp(w1, w2), (4,))
    assert _counts(measured) == [("0", 3, 2, 0), ("2", 2, 0, 2)]
    assert measured.layers_cut == 0 and measured.path is False  # no layer empty, yet no path


def test_an_empty_layer_is_cut():
    measured = connectivity(_mlp(torch.zeros(3, 4), torch.ones(2, 3)), (4,))
    assert measured.layers_cut == 1 and measured.no_incoming == 3 and measured.unused_inputs == 4
    assert measured.path is False


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.branch = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(x + self.branch(x))


def test_the_skip_keeps_a_path_past_an_empty_branch():
    model = Residual()
    with torch.no_grad():
        model.branch.weight.zero_()
    measured = connectivity(model, (4,))
    assert measured.layers_cut == 1 and measured.path is True


def test_a_dense_model_is_fully_connected_and_left_as_it_was():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3)
    )
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    measured = connectivity(model, (3, 8, 8))
    assert (measured.units, measured.no_incoming, measured.unused_inputs, measured.layers_cut) == (7, 0, 0, 0)
    assert measured.path is True
    assert model.training  # mode restored
    assert torch.equal(torch.get_rng_state(), rng)  # global RNG untouched
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats too


def test_the_path_check_is_reproducible():
    model = Residual()
    assert input_reaches_output(model, (4,)) is input_reaches_output(model, (4,)) is True


class DictOut(nn.Module):
    def __init__(self, cut: bool):
        super().__init__()
        self.fc = nn.Linear(4, 2)
        if cut:
            with torch.no_grad():
                self.fc.weight.zero_()

    def forward(self, x):
        return {"logits": self.fc(x), "aux": (torch.zeros(1), self.fc.bias)}


@pytest.mark.parametrize("cut", [False, True])
def test_dict_and_tuple_outputs_are_compared_tensor_by_tensor(cut):
    assert input_reaches_output(DictOut(cut), (4,)) is (not cut)


def test_a_forward_that_fails_leaves_the_path_unknown():
    model = nn.Linear(4, 2).train()
    assert input_reaches_output(model, (5,)) is None
    assert model.training
