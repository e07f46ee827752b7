import pytest
import torch

from models import AutoEncoderCov3D, AutoEncoderCov3DMem
from options import TestOptions as EvalOptions  # a name starting with "Test" is collected by pytest
from utils.checkpoint import CheckpointError, find_weights, load_weights, read_state_dict


def legacy_state_dict(model):
    """A state dict as PyTorch 0.4.0 saved it: no num_batches_tracked entries and no version metadata."""
    return {k: v.clone() for k, v in model.state_dict().items() if not k.endswith('num_batches_tracked')}


def options(*args):
    return EvalOptions().parse(list(args), is_print=False)


def test_legacy_non_zip_state_dict_loads_strictly(tmp_path):
    torch.manual_seed(0)
    source = AutoEncoderCov3DMem(1, 20)
    path = tmp_path / 'legacy.pt'
    torch.save(legacy_state_dict(source), path, _use_new_zipfile_serialization=False)
    model = load_weights(AutoEncoderCov3DMem(1, 20), path, options('--MemDim', '20'))
    for key, value in legacy_state_dict(source).items():
        assert torch.equal(model.state_dict()[key], value)


def test_wrapped_and_dataparallel_state_dicts_load(tmp_path):
    source = AutoEncoderCov3D(1)
    path = tmp_path / 'wrapped.pt'
    torch.save({'model': {f'module.{k}': v for k, v in source.state_dict().items()}, 'epoch': 3}, path)
    assert set(read_state_dict(path)) == set(source.state_dict())
    load_weights(AutoEncoderCov3D(1), path, options('--ModelName', 'AE'))


def test_memory_size_mismatch_names_the_flag_and_the_value_in_the_file(tmp_path):
    path = tmp_path / 'w.pt'
    torch.save(AutoEncoderCov3DMem(1, 20).state_dict(), path)
    with pytest.raises(CheckpointError, match=r'has 20 memory slots, but --MemDim is 30: pass --MemDim 20'):
        load_weights(AutoEncoderCov3DMem(1, 30), path, options('--MemDim', '30'))


def test_ae_weights_into_memae_are_refused(tmp_path):
    path = tmp_path / 'ae.pt'
    torch.save(AutoEncoderCov3D(1).state_dict(), path)
    with pytest.raises(CheckpointError, match='it holds an AE'):
        load_weights(AutoEncoderCov3DMem(1, 20), path, options())


def test_unreadable_file_is_reported(tmp_path):
    path = tmp_path / 'broken.pt'
    path.write_bytes(b'\x80\x02garbage')
    with pytest.raises(CheckpointError, match='not a readable PyTorch weights file'):
        read_state_dict(path)


def test_released_file_name_is_found_and_missing_weights_list_the_names_tried(tmp_path):
    opt = options('--ModelRoot', str(tmp_path))
    with pytest.raises(CheckpointError, match='tried: .*_Seed1_Non.pt, .*ShrThres0.0025_Non.pt'):
        find_weights(opt)
    released = tmp_path / 'MemAE_Conv3DSpar_UCSD_P2_256_MemDim2000_EntW0.0002_ShrThres0.0025_Non.pt'
    released.write_bytes(b'')
    assert find_weights(opt) == released
    trained = tmp_path / f'model_{opt.setting}' / f'{opt.setting}_epoch_0009_final.pt'
    trained.parent.mkdir()
    trained.write_bytes(b'')
    released.unlink()
    assert find_weights(opt) == trained
