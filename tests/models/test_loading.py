"""Model sources: library specs, state_dicts + --arch, snipit checkpoints, pickle safety."""

from pathlib import Path

import pytest
import torch
from conftest import TINY_MODELS
from safetensors.torch import load_file, save_file
from tiny_models import TiedMLP, TinyCNN

from snipit_cli import load_model
from snipit_cli.errors import ModelError, UnsafeCheckpointError, UsageError
from snipit_cli.models.checkpoint import checkpoint_writer, read_metadata, read_tensors
from snipit_cli.models.loading import resolve_model

ARCH = "tiny_models:TinyCNN"  # importable: pytest puts tests/ on sys.path
FILE_ARCH = f"{TINY_MODELS}:TinyCNN"


def _same_outputs(a, b, shape=(2, 3, 8, 8)):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    a.eval(), b.eval()
    with torch.no_grad():
        return torch.equal(a(x), b(x))


def _trained_tiny(seed=0):
    torch.manual_seed(seed)
    model = TinyCNN()
    model.features[1].running_mean.uniform_()  # buffers must round-trip too
    return model


def test_timm_and_torchvision_specs_build_with_num_classes():
    timm_model = resolve_model("timm:resnet18", num_classes=7)
    assert timm_model.model.fc.out_features == 7 and str(timm_model.arch) == "timm:resnet18"
    tv = resolve_model("torchvision:resnet18", num_classes=3)
    assert tv.model.fc.out_features == 3 and tv.name == "resnet18"


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("timm:resnet19", "did you mean resnet18"),
        ("torchvision:resnet19", "did you mean resnet18"),
        ("resnet18", "timm:resnet18 or torchvision:resnet18"),
        ("missing.pt", "no such file 'missing.pt'"),
    ],
)
def test_unknown_models_have_clear_errors(spec, fragment):
    with pytest.raises(ModelError, match=fragment):
        resolve_model(spec)


def test_pretrained_offline_fails_clearly():
    with pytest.raises(ModelError, match="pretrained weights for timm:resnet18.*drop --pretrained"):
        resolve_model("timm:resnet18", pretrained=True)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": sd},
        lambda sd: {"module." + k: v for k, v in sd.items()},
        lambda sd: {"state_dict": {"module." + k: v for k, v in sd.items()}},
    ],
    ids=["plain", "state_dict", "model", "ddp-prefix", "wrapped-ddp"],
)
def test_state_dict_files_load_with_arch(tmp_path: Path, wrap):
    original = _trained_tiny()
    path = tmp_path / "ckpt.pth"
    torch.save(wrap(original.state_dict()), path)
    loaded = resolve_model(str(path), arch=ARCH)
    assert _same_outputs(original, loaded.model)
    assert loaded.name == "ckpt"


def _retag_as_cuda(path: Path) -> None:
    """Rewrite a torch.save zip so its storages say they live on cuda:0, as a GPU run saves them."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        entries = {info: zf.read(info.filename) for info in zf.infolist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for info, data in entries.items():
            if info.filename.endswith("data.pkl"):
                assert b"X\x03\x00\x00\x00cpu" in data
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            zf.writestr(info, data)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the point is a machine without CUDA")
def test_gpu_saved_checkpoint_loads_on_a_cpu_machine(tmp_path: Path):
    original = _trained_tiny()
    path = tmp_path / "gpu.pt"
    torch.save(original.state_dict(), path)
    _retag_as_cuda(path)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(path, weights_only=True)  # what a loader without map_location would hit
    assert _same_outputs(original, resolve_model(str(path), arch=ARCH).model)


def test_plain_safetensors_with_arch(tmp_path: Path):
    original = _trained_tiny()
    path = tmp_path / "plain.safetensors"
    save_file(original.state_dict(), path)
    assert read_metadata(path) is None
    assert _same_outputs(original, resolve_model(str(path), arch=ARCH).model)
    with pytest.raises(ModelError, match="--arch"):
        resolve_model(str(path))


def test_state_dict_without_arch_asks_for_it(tiny_checkpoint: Path):
    with pytest.raises(ModelError, match="holds a state_dict.*--arch"):
        resolve_model(str(tiny_checkpoint))


def test_mismatched_state_dict_lists_keys_and_shapes(tiny_checkpoint: Path):
    with pytest.raises(ModelError, match=r"head.weight \(5, 8\) vs \(9, 8\).*--num-classes"):
        resolve_model(str(tiny_checkpoint), arch=ARCH, arch_kwargs={"num_classes": 9})
    with pytest.raises(ModelError, match="missing in file: .*not in model: "):
        resolve_model(str(tiny_checkpoint), arch="timm:resnet18")


def test_full_pickled_module_needs_trust_pickle(tmp_path: Path):
    path = tmp_path / "whole.pt"
    original = _trained_tiny()
    torch.save(original, path)
    with pytest.raises(UnsafeCheckpointError, match="--trust-pickle"):
        resolve_model(str(path))
    loaded = resolve_model(str(path), trust_pickle=True)
    assert _same_outputs(original, loaded.model)


def test_malicious_pickle_never_runs_without_the_flag(tmp_path: Path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Exploit()}, path)
    with pytest.raises(UnsafeCheckpointError):
        resolve_model(str(path), arch=ARCH)
    assert not marker.exists()


def test_snipit_checkpoint_reloads_without_arch(tmp_path: Path):
    original = _trained_tiny()
    path = tmp_path / "out.safetensors"
    arch = resolve_model(str(_save(tmp_path, original)), arch=ARCH).arch
    doc = {"model": {"arch": arch.to_json(), "input_size": [3, 8, 8]}, "method": "snip"}
    checkpoint_writer(original, doc)(path)
    assert read_metadata(path)["method"] == "snip"
    model = load_model(path)
    assert not model.training
    assert _same_outputs(original, model)


def test_metadata_naming_a_function_is_refused_unless_confirmed(tmp_path: Path):
    original = _trained_tiny()
    path = tmp_path / "out.safetensors"
    spec = "tiny_models:tiny_cnn_factory"
    checkpoint_writer(original, {"model": {"arch": {"spec": spec, "kwargs": {}, "num_classes": None}}})(path)
    with pytest.raises(ModelError, match="not an nn.Module class.*--arch"):
        load_model(path)
    assert _same_outputs(original, load_model(path, arch=spec))


def test_package_module_callable_arch(tmp_path: Path):
    import torchvision

    torch.manual_seed(0)
    original = torchvision.models.resnet18(num_classes=4)
    path = tmp_path / "r.pt"
    torch.save(original.state_dict(), path)
    loaded = resolve_model(
        str(path), arch="torchvision.models.resnet:resnet18", arch_kwargs={"num_classes": 4}
    )
    assert _same_outputs(original, loaded.model, shape=(1, 3, 16, 16))


def test_tied_weights_survive_a_round_trip(tmp_path: Path):
    torch.manual_seed(0)
    original = TiedMLP()
    path = tmp_path / "tied.safetensors"
    checkpoint_writer(original, {"model": {"arch": {"spec": "tiny_models:TiedMLP", "kwargs": {}}}})(path)
    model = load_model(path)
    assert model.a.weight is model.b.weight
    assert _same_outputs(original, model, shape=(2, 6))


def _bits(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


@pytest.mark.parametrize("storage", ["sparse", "dense"])
def test_tied_pruned_weights_round_trip_bit_identically_in_either_storage(tmp_path: Path, storage):
    torch.manual_seed(0)
    original = TiedMLP(num_classes=64)
    with torch.no_grad():
        original.a.weight.mul_(torch.rand(64, 64) < 0.1)
        original.a.weight[0, :3] = torch.tensor([-0.0, float("nan"), 0.0])
    path = tmp_path / "tied.safetensors"
    arch = {"spec": "tiny_models:TiedMLP", "kwargs": {"num_classes": 64}}
    checkpoint_writer(original, {"model": {"arch": arch}}, storage)(path)
    raw = load_file(path)
    assert ("a.weight.__values" in raw) == (storage == "sparse") and "b.weight" not in raw  # tied: once
    assert read_metadata(path)["format_version"] == (2 if storage == "sparse" else 1)
    assert read_tensors(path).keys() == {"a.weight", "a.bias", "b.bias"}
    model = load_model(path)
    assert model.a.weight is model.b.weight
    state = model.state_dict()
    assert all(_bits(state[k]) == _bits(v) for k, v in original.state_dict().items())


def test_a_non_contiguous_tensor_is_stored_as_its_values(tmp_path: Path):
    module = torch.nn.Module()
    dense = torch.randn(64, 32) * (torch.rand(64, 32) < 0.1)
    module.register_buffer("w", dense.t())  # a transposed view
    path = tmp_path / "view.safetensors"
    checkpoint_writer(module, {}, "sparse")(path)
    assert torch.equal(read_tensors(path)["w"], dense.t()) and "w.__bitmask" in load_file(path)


@pytest.mark.parametrize(
    ("arch", "fragment"),
    [
        ("nonsense", "cannot read arch"),
        (f"{TINY_MODELS}:Nope", "has no attribute 'Nope'"),
        ("/nonexistent/file.py:Net", "does not exist"),
        ("no_such_pkg_xyz.mod:Net", "cannot import 'no_such_pkg_xyz.mod'"),
    ],
)
def test_bad_arch_specs(tiny_checkpoint: Path, arch, fragment):
    with pytest.raises((ModelError, UsageError), match=fragment):
        resolve_model(str(tiny_checkpoint), arch=arch)


def test_unknown_suffix_and_folder(tmp_path: Path):
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(ModelError, match="cannot tell the format"):
        resolve_model(str(tmp_path / "w.npz"))
    with pytest.raises(ModelError, match="is a folder"):
        resolve_model(str(tmp_path))


def _save(tmp_path: Path, model) -> Path:
    path = tmp_path / "sd.pt"
    torch.save(model.state_dict(), path)
    return path


def test_file_arch_works_with_arch_and_is_never_run_from_metadata(tmp_path: Path):
    original = _trained_tiny()
    state = _save(tmp_path, original)
    loaded = resolve_model(str(state), arch=FILE_ARCH)
    assert _same_outputs(original, loaded.model)
    assert loaded.arch.name == FILE_ARCH  # recorded as an absolute path

    # A checkpoint naming a code file must not make snipit execute it.
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.py"
    evil.write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\nclass Net: pass\n")
    path = tmp_path / "out.safetensors"
    checkpoint_writer(original, {"model": {"arch": {"spec": f"{evil}:Net", "kwargs": {}}}})(path)
    with pytest.raises(ModelError, match="does not run files named by a checkpoint.*--arch"):
        load_model(path)
    assert not marker.exists()
    checkpoint_writer(original, {"model": {"arch": {"spec": f"{FILE_ARCH}", "kwargs": {}}}})(path)
    assert _same_outputs(original, load_model(path, arch=FILE_ARCH))
