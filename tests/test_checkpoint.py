import pytest
import torch

from models import AutoEncoderCov3D, AutoEncoderCov3DMem
from options import TestOptions as EvalOptions  # a name starting with "Test" is collected by pytest
from utils.checkpoint import (AUTHORS_WEIGHTS_URL, CheckpointError, candidate_paths, find_weights,
                              load_training_state, load_weights, read_state_dict, released_file_name, resolve_resume,
                              resume_file, save_training_state)


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


def test_only_a_dict_of_tensors_is_a_state_dict(tmp_path):
    for content in ([torch.ones(1)], {'w': torch.ones(1), 'epoch': 3}):
        torch.save(content, tmp_path / 'w.pt')
        with pytest.raises(CheckpointError, match='does not hold a state dict of tensors'):
            read_state_dict(tmp_path / 'w.pt')


def test_training_state_round_trip_and_the_run_it_belongs_to(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    path = resume_file(tmp_path, 'RunA')
    assert path == tmp_path / 'RunA_resume.pt'
    save_training_state(path, model, optimizer, 3, 120, {'torch': torch.get_rng_state()}, 'RunA')
    state = load_training_state(path, 'RunA')
    assert (state['epochs_done'], state['iteration'], state['setting']) == (3, 120, 'RunA')
    assert torch.equal(state['model']['weight'], model.weight.detach())
    assert state['optimizer']['state'][0]['momentum_buffer'].shape == (2, 3)
    assert torch.equal(state['rng']['torch'], torch.get_rng_state())
    with pytest.raises(CheckpointError, match='belongs to the run RunA, not to RunB'):
        load_training_state(path, 'RunB')
    (tmp_path / 'cut.pt').write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r'cut.pt is not a readable training state \(--Resume\): it is'):
        load_training_state(tmp_path / 'cut.pt', 'RunA')
    torch.save(model.state_dict(), tmp_path / 'plain.pt')
    with pytest.raises(CheckpointError, match='plain weights cannot be resumed'):
        load_training_state(tmp_path / 'plain.pt', 'RunA')


def test_resume_names_the_runs_own_state_or_a_given_file(tmp_path):
    assert resolve_resume(None, tmp_path, 'RunA') is None
    assert resolve_resume('auto', tmp_path, 'RunA') is None  # nothing saved yet: --Resume auto starts afresh
    resume_file(tmp_path, 'RunA').write_bytes(b'x')
    assert resolve_resume('auto', tmp_path, 'RunA') == tmp_path / 'RunA_resume.pt'
    assert resolve_resume(str(tmp_path / 'RunA_resume.pt'), tmp_path / 'elsewhere', 'RunA') == \
        tmp_path / 'RunA_resume.pt'
    with pytest.raises(CheckpointError, match=r'--Resume .*missing.pt does not exist; pass a RunA_resume.pt file'):
        resolve_resume(str(tmp_path / 'missing.pt'), tmp_path, 'RunA')


def test_weights_are_looked_for_in_the_documented_order(tmp_path):
    opt = options('--ModelRoot', str(tmp_path), '--MemDim', '20')
    setting = opt.setting
    assert released_file_name(options().setting) == \
        'MemAE_Conv3DSpar_UCSD_P2_256_MemDim2000_EntW0.0002_ShrThres0.0025_Non.pt'  # the authors' file
    assert released_file_name(setting) == setting.replace('_Seed1', '') + '.pt'
    assert released_file_name('MemAE_X_Seed1_Seed2') == 'MemAE_X_Seed2.pt'  # only the run's own seed field goes
    folder = tmp_path / f'model_{setting}'
    folder.mkdir()
    for epoch in (1, 10, 3):
        (folder / f'{setting}_epoch_{epoch:04d}_final.pt').write_bytes(b'x')
    assert candidate_paths(opt) == [tmp_path / f'{setting}.pt', tmp_path / released_file_name(setting),
                                    *(folder / f'{setting}_epoch_{e:04d}_final.pt' for e in (10, 3, 1))]
    assert find_weights(opt) == folder / f'{setting}_epoch_0010_final.pt'  # the newest final weights
    (tmp_path / released_file_name(setting)).write_bytes(b'x')
    assert find_weights(opt) == tmp_path / released_file_name(setting)
    given = options('--ModelRoot', str(tmp_path), '--ModelFilePath', str(tmp_path / 'mine.pt'))
    assert candidate_paths(given) == [tmp_path / 'mine.pt']
    with pytest.raises(CheckpointError, match=r'^no model weights found; tried: \S+mine.pt \(check --ModelFilePath\)$'):
        find_weights(given)


def test_missing_weights_list_the_places_searched_and_the_one_fix_for_the_setting(tmp_path):
    """Each setting gets its own fix: the authors' download only for the two files they released."""
    for flags, fix in (
            ((), "download the authors' weights from https://drive.google.com/drive/folders/"
                 '1N2DvmZwCKx_8bZWeueJNn9nsh3rQXdTg and save them as '
                 f'{tmp_path / "MemAE_Conv3DSpar_UCSD_P2_256_MemDim2000_EntW0.0002_ShrThres0.0025_Non.pt"}'),
            (('--ModelName', 'AE', '--ModelSetting', 'Conv3D'),
             f"download the authors' weights from {AUTHORS_WEIGHTS_URL} and save them as "
             f'{tmp_path / "AE_Conv3D_UCSD_P2_256_Non.pt"}'),
            (('--MemDim', '20'), 'train them with the same model flags: bash train.sh EXPERIMENT writes them to '
                                 './results/, then MODEL_ROOT=./results/ bash test.sh EXPERIMENT scores them (bash '
                                 'train.sh --help lists the experiments); or set --ModelFilePath'),
            (('--Dataset', 'SyntheticDemo'), 'run bash test.sh demo, which trains the demo model before testing it')):
        opt = options('--ModelRoot', str(tmp_path), *flags)
        with pytest.raises(CheckpointError) as error:
            find_weights(opt)
        message = str(error.value)
        places = [tmp_path / f'{opt.setting}.pt', tmp_path / released_file_name(opt.setting),  # the same for an AE
                  tmp_path / f'model_{opt.setting}' / f'{opt.setting}_epoch_*_final.pt']
        searched = ', '.join(str(place) for place in dict.fromkeys(places))
        assert message.startswith(f'no model weights found for {opt.setting}; searched {searched}; to fix: {fix}')
        assert message.endswith(fix) or message.endswith(f'{fix} (memae_models/README.md)')


class RunsCode:
    def __reduce__(self):
        import os
        return os.system, ('true',)


def test_unreadable_files_say_why_in_one_sentence(tmp_path):
    torch.save({'w': RunsCode()}, tmp_path / 'code.pt')
    (tmp_path / 'text.pt').write_bytes(b'garbage bytes')
    torch.save({'w': torch.ones(3)}, tmp_path / 'whole.pt')
    (tmp_path / 'half.pt').write_bytes((tmp_path / 'whole.pt').read_bytes()[:300])
    (tmp_path / 'pickle.pt').write_bytes(b'\x80\x02garbage')  # a pickle header, then nonsense
    reasons = {}
    for name in ('code', 'text', 'half', 'pickle'):
        with pytest.raises(CheckpointError) as error:
            read_state_dict(tmp_path / f'{name}.pt')
        prefix = f'{tmp_path / name}.pt is not a readable PyTorch weights file: '
        assert str(error.value).startswith(prefix)
        reasons[name] = str(error.value)[len(prefix):]
    assert reasons['code'].startswith('it refers to Python code (posix.system) that loading would run, so it was '
                                      'refused without running anything')
    assert reasons['text'] == reasons['pickle'] == 'it is damaged or holds something other than tensors'
    assert reasons['half'] == 'it is truncated, damaged or not a PyTorch file (RuntimeError)'


def mismatch(tmp_path, state, model, **flags):
    """The one-sentence error of loading ``state`` into ``model``."""
    from types import SimpleNamespace
    opt = SimpleNamespace(**{'Dataset': 'MNIST', 'ModelName': 'MemAE', 'MemDim': 20, 'ImgChnNum': 1, **flags})
    torch.save(state, tmp_path / 'w.pt')
    with pytest.raises(CheckpointError) as error:
        load_weights(model, tmp_path / 'w.pt', opt)
    prefix = f"{tmp_path / 'w.pt'} "
    assert str(error.value).startswith(prefix)
    return str(error.value)[len(prefix):]


def test_every_kind_of_mismatch_names_its_cause(tmp_path):
    from models import ImageAutoEncoder, ImageMemAE, MLPAutoEncoder, MLPMemAE
    records = MLPMemAE(7, 20).state_dict()
    assert mismatch(tmp_path, records, ImageMemAE(20)) == (
        'holds a KDDCUP99 network (fully connected layers), but --Dataset MNIST takes an image network (2-D '
        'convolutions): the weights belong to another data set')
    for unknown in ({'other.weight': torch.zeros(2, 2)}, {'encoder.0.weight': torch.zeros(2, 2, 2)}):
        assert mismatch(tmp_path, unknown, ImageMemAE(20)).startswith(
            'holds an unknown network, but --Dataset MNIST takes an image network')
    assert mismatch(tmp_path, ImageAutoEncoder().state_dict(), ImageMemAE(20)) == \
        'has no memory (mem_rep.memory.weight): it holds an AE, not a --ModelName MemAE'
    assert mismatch(tmp_path, records, MLPAutoEncoder(7), ModelName='AE') == \
        'holds a memory model (MemAE), not a --ModelName AE'
    assert mismatch(tmp_path, records, MLPMemAE(7, 30), MemDim=30) == \
        'has 20 memory slots, but --MemDim is 30: pass --MemDim 20'
    assert mismatch(tmp_path, ImageMemAE(20).state_dict(), ImageMemAE(20, query='position')) == (
        "has memory slots of 1024 features, but this network's encoder gives 64 (another --MemQuery, --Dataset or "
        'data shape?)')
    assert mismatch(tmp_path, AutoEncoderCov3D(1).state_dict(), AutoEncoderCov3D(3), ImgChnNum=3) == \
        'takes 1-channel frames, but --ImgChnNum is 3'
    bare = {k: records[k] for k in ('encoder.0.weight', 'mem_rep.weight')}  # the first five missing keys are named
    missing = sorted(set(records) - set(bare))[:5]
    assert mismatch(tmp_path, bare, MLPMemAE(7, 20)) == \
        f'does not fit --ModelName MemAE: missing keys {missing}, unexpected keys [], wrong shapes []'
    assert len(records) - 2 > 5
    crowded = {**{f'extra.{i}': torch.zeros(1) for i in range(7)},
               **{k: (torch.zeros(1) if k.startswith('decoder') else v) for k, v in records.items()}}
    wrong = sorted(k for k in records if k.startswith('decoder'))
    assert len(wrong) > 5 and mismatch(tmp_path, crowded, MLPMemAE(7, 20)) == (
        f"does not fit --ModelName MemAE: missing keys [], unexpected keys {[f'extra.{i}' for i in range(5)]}, "
        f'wrong shapes {wrong[:5]}')
    renamed = {('decoder.0.weightx' if k == 'decoder.0.weight' else k): v for k, v in records.items()}
    renamed['decoder.2.bias'] = torch.zeros(5)
    assert mismatch(tmp_path, renamed, MLPMemAE(7, 20)) == (
        "does not fit --ModelName MemAE: missing keys ['decoder.0.weight'], unexpected keys ['decoder.0.weightx'], "
        "wrong shapes ['decoder.2.bias']")
