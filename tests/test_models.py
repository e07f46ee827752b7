import inspect

import pytest
import torch

from models import AutoEncoderCov3D, AutoEncoderCov3DMem, EntropyLoss, EntropyLossEncap, weights_init
from models.losses import latent_l1_loss
from utils.errors import InputError

ENCODER = [('encoder.0', (96, 1, 3, 3, 3)), ('encoder.1', 96), ('encoder.3', (128, 96, 3, 3, 3)), ('encoder.4', 128),
           ('encoder.6', (256, 128, 3, 3, 3)), ('encoder.7', 256), ('encoder.9', (256, 256, 3, 3, 3)),
           ('encoder.10', 256)]
DECODER = [('decoder.0', (256, 256, 3, 3, 3)), ('decoder.1', 256), ('decoder.3', (256, 128, 3, 3, 3)), ('decoder.4', 128),
           ('decoder.6', (128, 96, 3, 3, 3)), ('decoder.7', 96), ('decoder.9', (96, 1, 3, 3, 3))]


def expected_keys(layers):
    """(key, shape) of conv layers (given their weight shape) and BatchNorm layers (given their channels), in
    the order of the released state dicts (with the num_batches_tracked buffers PyTorch >= 0.4.1 adds)."""
    keys = []
    for name, spec in layers:
        if isinstance(spec, tuple):
            keys += [(f'{name}.weight', spec), (f'{name}.bias', (spec[1] if 'decoder' in name else spec[0],))]
        else:
            keys += [(f'{name}.{k}', (spec,)) for k in ('weight', 'bias', 'running_mean', 'running_var')]
            keys.append((f'{name}.num_batches_tracked', ()))
    return keys


MEMAE_KEYS = expected_keys(ENCODER) + [('mem_rep.memory.weight', (2000, 256))] + expected_keys(DECODER)
AE_KEYS = expected_keys(ENCODER) + expected_keys(DECODER)


def state_shapes(model):
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def test_memae_state_dict_keys_and_shapes_are_pinned():
    assert state_shapes(AutoEncoderCov3DMem(1, 2000, shrink_thres=0.0025)) == MEMAE_KEYS


def test_ae_state_dict_keys_and_shapes_are_pinned():
    assert state_shapes(AutoEncoderCov3D(1)) == AE_KEYS


def test_constructor_signatures_are_the_released_ones():
    ae = inspect.signature(AutoEncoderCov3D).parameters
    memae = inspect.signature(AutoEncoderCov3DMem).parameters
    assert list(ae) == ['chnum_in']
    assert list(memae)[:3] == ['chnum_in', 'mem_dim', 'shrink_thres']
    assert memae['shrink_thres'].default == 0.0025
    memory = AutoEncoderCov3DMem(1, 10).mem_rep.memory  # our added arguments default to the released computation
    assert (memory.addressing, memory.temperature) == ('dot', 1.0)
    assert AutoEncoderCov3D(3).chnum_in == AutoEncoderCov3DMem(3, 10).chnum_in == 3  # released attributes


def test_only_ael1_adds_the_latent_penalty():
    from models import has_latent_penalty, is_memory_model
    assert [has_latent_penalty(m) for m in ('AE', 'MemAE', 'AEL1')] == [False, False, True]
    assert [is_memory_model(m) for m in ('AE', 'MemAE', 'AEL1')] == [False, True, False]


def test_memae_forward_returns_reconstruction_and_addressing_weights():
    torch.manual_seed(0)
    model = AutoEncoderCov3DMem(1, 30).eval()
    clips = torch.randn(2, 1, 16, 32, 48)
    with torch.no_grad():
        result = model(clips)
    assert result['output'].shape == clips.shape
    assert result['att'].shape == (2, 30, 2, 2, 3)
    torch.testing.assert_close(result['att'].sum(dim=1), torch.ones(2, 2, 2, 3))


def test_ae_forward_returns_a_tensor_of_the_input_shape():
    model = AutoEncoderCov3D(3).eval()
    clips = torch.randn(1, 3, 8, 16, 16)
    with torch.no_grad():
        assert model(clips).shape == clips.shape


@pytest.mark.parametrize('shape', [(1, 1, 12, 32, 32), (1, 1, 16, 40, 32), (1, 1, 16, 32, 24)])
def test_clip_shapes_that_do_not_fit_fail_with_one_sentence(shape):
    with pytest.raises(InputError, match='multiple of 8 .* multiples of 16'):
        AutoEncoderCov3DMem(1, 10)(torch.randn(*shape))


def test_weights_init_follows_the_release():
    torch.manual_seed(0)
    model = AutoEncoderCov3DMem(1, 2000)
    memory_before = model.mem_rep.memory.weight.detach().clone()
    conv_bias_before = model.encoder[0].bias.detach().clone()
    model.apply(weights_init)
    conv = model.encoder[9].weight.detach()
    assert abs(conv.mean().item()) < 1e-3 and abs(conv.std().item() - 0.02) < 1e-3
    bn = model.decoder[1]
    assert abs(bn.weight.mean().item() - 1) < 0.01 and abs(bn.weight.std().item() - 0.02) < 0.01
    assert torch.all(bn.bias == 0)
    assert torch.equal(model.mem_rep.memory.weight, memory_before)
    assert torch.equal(model.encoder[0].bias, conv_bias_before)


def test_entropy_loss_values():
    one_hot = torch.eye(5)
    uniform = torch.full((3, 5), 0.2)
    assert EntropyLoss()(one_hot).item() == pytest.approx(0.0, abs=1e-9)
    assert EntropyLoss()(uniform).item() == pytest.approx(torch.log(torch.tensor(5.0)).item(), rel=1e-6)


def test_entropy_loss_encap_averages_over_every_position():
    torch.manual_seed(1)
    att = torch.softmax(torch.randn(2, 7, 2, 3, 4), dim=1)
    per_position = -(att * torch.log(att + 1e-12)).sum(dim=1)
    torch.testing.assert_close(EntropyLossEncap()(att), per_position.mean())


def test_loss_scalings():
    from models.losses import entropy_loss, reconstruction_loss
    torch.manual_seed(2)
    clips, recon = torch.randn(3, 1, 4, 5, 6), torch.randn(3, 1, 4, 5, 6)
    att = torch.softmax(torch.randn(3, 7, 2, 2, 2), dim=1)
    torch.testing.assert_close(reconstruction_loss(recon, clips, 'released'), ((recon - clips) ** 2).mean())
    torch.testing.assert_close(reconstruction_loss(recon, clips, 'paper'),
                               ((recon - clips) ** 2).flatten(1).sum(1).mean())
    per_query = -(att * torch.log(att + 1e-12)).sum(dim=1)  # 3 x 2 x 2 x 2
    torch.testing.assert_close(entropy_loss(att, 'released'), per_query.mean())
    torch.testing.assert_close(entropy_loss(att, 'paper'), per_query.flatten(1).sum(1).mean())


@pytest.mark.parametrize('family', ['video', 'image', 'tabular'])
def test_the_decoder_reads_the_memory_not_the_encoder(family):
    """With every memory slot zero, the read-out w M is zero whatever the addressing weights w, so the
    reconstruction (eval mode) cannot depend on the input; with the slots restored it does. A decoder fed by the
    encoder's output instead of the memory's read-out fails the first half."""
    from models import build_model
    torch.manual_seed(0)
    if family == 'video':
        model, shape = AutoEncoderCov3DMem(1, 20), (2, 1, 16, 32, 32)
    else:
        model = build_model(model_options('--MemDim', '20', '--Dataset', 'MNIST'), family, arch='mnist', input_dim=7)
        shape = (2, 1, 28, 28) if family == 'image' else (2, 7)
    model.apply(weights_init).eval()
    first, second = torch.randn(shape), torch.randn(shape)
    with torch.no_grad():
        assert not torch.equal(model(first)['output'], model(second)['output'])
        for parameter in model.mem_rep.parameters():
            parameter.zero_()
        assert torch.equal(model(first)['output'], model(second)['output'])


@pytest.mark.parametrize('scaling,per_element', [('released', True), ('paper', False)])
def test_l1_penalty_gradient_is_the_scaled_sign_of_the_encoding(scaling, per_element):
    latent = torch.randn(3, 4, 5, requires_grad=True)
    latent_l1_loss(latent, scaling).backward()
    scale = latent.numel() if per_element else latent.shape[0]
    assert torch.allclose(latent.grad, torch.sign(latent.detach()) / scale)


def model_options(*flags):
    from options import TestOptions as EvalOptions
    return EvalOptions().parse(list(flags), is_print=False)


@pytest.mark.parametrize('family', ['video', 'image', 'tabular'])
def test_build_model_sizes_each_family_from_the_options(family):
    from models import ImageAutoEncoder, ImageMemAE, MLPAutoEncoder, MLPMemAE, build_model
    memae = build_model(model_options('--MemDim', '7', '--ShrinkThres', '0.05', '--MemAddressing', 'cosine',
                                      '--ImgChnNum', '3', '--MemQuery', 'position', '--MemTemperature', '0.25'),
                        family, arch='cifar10', input_dim=9)
    ae = build_model(model_options('--ModelName', 'AE', '--ImgChnNum', '3'), family, arch='cifar10', input_dim=9)
    classes = {'video': (AutoEncoderCov3DMem, AutoEncoderCov3D), 'image': (ImageMemAE, ImageAutoEncoder),
               'tabular': (MLPMemAE, MLPAutoEncoder)}[family]
    assert (type(memae), type(ae)) == classes
    memory = memae.mem_rep if family == 'tabular' else memae.mem_rep.memory  # records: one query per record
    assert (memory.mem_dim, memory.shrink_thres, memory.addressing, memory.temperature) == (7, 0.05, 'cosine', 0.25)
    if family == 'image':  # the other image memory, one query per whole encoding
        whole = build_model(model_options('--MemDim', '7', '--MemTemperature', '0.25'), family, arch='mnist')
        assert whole.mem_rep.memory.temperature == 0.25
    first = {'video': lambda m: m.encoder[0].in_channels, 'image': lambda m: m.encoder[0].in_channels,
             'tabular': lambda m: m.encoder[0].in_features}[family]
    assert first(memae) == first(ae) == {'video': 3, 'image': 3, 'tabular': 9}[family]
    if family == 'image':
        assert memae.arch == ae.arch == 'cifar10' and memory.fea_dim == 256  # a query per latent position


@pytest.mark.parametrize('name', ['MemAE', 'AE', 'AEL1'])
def test_build_model_gives_every_image_model_the_layer_options(name):
    from models import build_model
    layers = ('--ImageFirstKernel', '5', '--ImageCodeChannels', '8', '--ImageRange', 'unit_sigmoid')
    model = build_model(model_options('--ModelName', name, '--Dataset', 'MNIST', '--MemDim', '7', *layers), 'image',
                        arch='mnist')
    assert model.encoder[0].kernel_size == (5, 5) and model.decoder[0].in_channels == 8
    assert isinstance(model.decoder[-1], torch.nn.Sigmoid)


def test_build_model_defaults_to_video_and_lists_the_models_it_knows():
    from types import SimpleNamespace
    from models import build_model
    assert type(build_model(model_options('--MemDim', '5'))) is AutoEncoderCov3DMem
    with pytest.raises(InputError, match="unknown --ModelName 'VAE'; valid: AE, MemAE, AEL1"):
        build_model(SimpleNamespace(ModelName='VAE'))


def released_video_forward(state, clips, memory=None):
    """The released 3-D autoencoder written out with torch.nn.functional from its description: four Conv3d (kernel
    3, padding 1; stride (1, 2, 2) first, then 2) each with eval-mode BatchNorm and LeakyReLU(0.2); the mirror
    with ConvTranspose3d (output padding 1, the last one stride (1, 2, 2) and output padding (0, 1, 1)) with no
    normalisation or activation after the last. ``memory``: the read-out replacing the encoding."""
    from torch.nn import functional as F

    def norm_act(x, name):
        x = F.batch_norm(x, state[f'{name}.running_mean'], state[f'{name}.running_var'], state[f'{name}.weight'],
                         state[f'{name}.bias'], training=False, eps=1e-5)
        return F.leaky_relu(x, 0.2)

    x = clips
    for i, (conv, bn) in enumerate([(0, 1), (3, 4), (6, 7), (9, 10)]):
        x = F.conv3d(x, state[f'encoder.{conv}.weight'], state[f'encoder.{conv}.bias'],
                     stride=(1, 2, 2) if i == 0 else 2, padding=1)
        x = norm_act(x, f'encoder.{bn}')
    if memory is not None:
        x = memory(x)
    for conv, bn in [(0, 1), (3, 4), (6, 7)]:
        x = F.conv_transpose3d(x, state[f'decoder.{conv}.weight'], state[f'decoder.{conv}.bias'], stride=2,
                               padding=1, output_padding=1)
        x = norm_act(x, f'decoder.{bn}')
    return F.conv_transpose3d(x, state['decoder.9.weight'], state['decoder.9.bias'], stride=(1, 2, 2), padding=1,
                              output_padding=(0, 1, 1))


def test_video_models_compute_the_released_network():
    """Against the independent functional version above, with random BatchNorm statistics (eval mode)."""
    torch.manual_seed(3)
    clips = torch.randn(2, 1, 8, 32, 32)
    for model in (AutoEncoderCov3D(1), AutoEncoderCov3DMem(1, 12, shrink_thres=0.05)):
        model.apply(weights_init)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
        model.eval()
        state = model.state_dict()
        with torch.no_grad():
            output = model(clips)
            if isinstance(output, dict):
                from models import MemModule
                memory = MemModule(12, 256, shrink_thres=0.05)
                memory.memory.weight.copy_(state['mem_rep.memory.weight'])
                expected = released_video_forward(state, clips, lambda z: memory(z)['output'])
                output = output['output']
            else:
                expected = released_video_forward(state, clips)
        torch.testing.assert_close(output, expected, rtol=1e-4, atol=1e-5)
