import pytest
import torch

import numpy as np

from models import IMAGE_RANGES, ImageAutoEncoder, ImageMemAE, MLPAutoEncoder, MLPMemAE, EntropyLossEncap
from models.image_ae import latent_shape
from utils.one_class import as_tensor


@pytest.mark.parametrize('arch, shape, latent', [('mnist', (1, 28, 28), (64, 4, 4)), ('cifar10', (3, 32, 32), (256, 2, 2))])
def test_image_models_map_images_back_to_their_size(arch, shape, latent):
    assert latent_shape(arch) == latent
    x = torch.rand(3, *shape)
    assert ImageAutoEncoder(arch)(x).shape == x.shape
    result = ImageMemAE(20, arch=arch)(x)
    assert result['output'].shape == x.shape and result['att'].shape == (3, 20)
    assert ImageMemAE(20, arch=arch).mem_rep.memory.weight.shape == (20, latent[0] * latent[1] * latent[2])
    positional = ImageMemAE(20, arch=arch, query='position')
    assert positional(x)['att'].shape == (3, 20, latent[1], latent[2])
    assert positional.mem_rep.memory.weight.shape == (20, latent[0])


def test_mnist_layers_follow_the_paper():
    model = ImageAutoEncoder('mnist')
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert [(m.kernel_size[0], m.stride[0], m.out_channels) for m in convs] == \
        [(1, 2, 16), (3, 2, 32), (3, 2, 64), (3, 2, 64), (3, 2, 32), (3, 2, 1)]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 5  # every layer but the last
    assert isinstance(model.decoder[-1], torch.nn.ConvTranspose2d)


def test_the_first_kernel_option_makes_the_first_layer_see_every_pixel():
    """Kernel 1 with stride 2 reads only pixels of even row and column; kernel 3 (padding 1) reads their
    neighbours too, with the same output size."""
    plain, wide = ImageAutoEncoder('mnist').eval(), ImageAutoEncoder('mnist', first_kernel=3).eval()
    assert (wide.encoder[0].kernel_size, wide.encoder[0].padding, wide.encoder[0].out_channels) == ((3, 3), (1, 1), 16)
    assert ImageAutoEncoder('mnist', first_kernel=5).encoder[0].padding == (2, 2)
    # kernel 1 given explicitly is the default layer
    assert [tuple(v.shape) for v in ImageAutoEncoder('mnist', first_kernel=1).state_dict().values()] == \
        [tuple(v.shape) for v in plain.state_dict().values()]
    x = torch.rand(1, 1, 28, 28)
    odd = x.clone()
    odd[0, 0, 1::2, 1::2] = 0  # change only pixels of odd row and column
    assert torch.equal(plain.encoder[0](x), plain.encoder[0](odd))
    assert not torch.equal(wide.encoder[0](x), wide.encoder[0](odd))
    assert wide(x).shape == x.shape and latent_shape('mnist', first_kernel=5) == (64, 4, 4)
    with pytest.raises(ValueError, match='odd'):
        ImageAutoEncoder('mnist', first_kernel=2)


@pytest.mark.parametrize('arch, channels, latent', [('mnist', 16, (16, 4, 4)), ('cifar10', 32, (32, 2, 2)),
                                                    ('mnist', 1, (1, 4, 4))])
def test_the_code_channels_option_narrows_the_code_and_the_memory_slots(arch, channels, latent):
    assert latent_shape(arch, code_channels=channels) == latent
    model = ImageMemAE(20, arch=arch, code_channels=channels)
    assert model.encoder[-3].out_channels == model.decoder[0].in_channels == channels
    assert model.mem_rep.memory.weight.shape == (20, latent[0] * latent[1] * latent[2])
    x = torch.rand(2, *model.decode_slots().shape[1:])
    assert model(x)['output'].shape == x.shape


def test_image_ranges_set_the_output_activation_and_keep_the_weight_names():
    x = torch.rand(3, 1, 28, 28)
    keys = list(ImageMemAE(20).state_dict())
    for image_range, (low, activation) in IMAGE_RANGES.items():
        model = ImageMemAE(20, image_range=image_range).eval()
        assert list(model.state_dict()) == keys  # an activation has no weights: files keep their keys
        body = model.decoder if activation is None else model.decoder[:-1]
        assert isinstance(body[-1], torch.nn.ConvTranspose2d)  # the activation, if any, follows the last layer
        before = body(model.mem_rep(model.encoder(x))['output'])
        expected = before if activation is None else activation()(before)
        assert torch.allclose(model(x)['output'], expected)
    with pytest.raises(ValueError, match="unknown image range 'symmetric'"):
        ImageAutoEncoder('mnist', image_range='symmetric')


def test_images_are_scaled_to_the_range_of_the_option():
    pixels = np.array([[[[0, 51, 255]]]], dtype=np.uint8)
    assert as_tensor(pixels).flatten().tolist() == pytest.approx([0.0, 0.2, 1.0])
    assert as_tensor(pixels, low=IMAGE_RANGES['symmetric_tanh'][0]).flatten().tolist() == \
        pytest.approx([-1.0, -0.6, 1.0])
    records = np.array([[-3.5, 2.0]])  # records are already float: never rescaled
    assert as_tensor(records, low=-1.0).tolist() == [[-3.5, 2.0]]


def test_image_memae_defaults_and_whole_encoding_addressing():
    memory = ImageMemAE(20).mem_rep.memory  # MNIST, lambda 1/N of the paper's [1/N, 3/N] for N = 100
    assert (memory.fea_dim, memory.shrink_thres, memory.addressing, memory.temperature) == (1024, 0.01, 'dot', 1.0)
    assert ImageMemAE(20, query='position').mem_rep.memory.temperature == 1.0
    assert ImageMemAE(20, addressing='cosine').mem_rep.memory.addressing == 'cosine'


def test_memory_slots_decode_into_images():
    model = ImageMemAE(7, arch='mnist').eval()
    assert model.decode_slots().shape == (7, 1, 28, 28)
    with pytest.raises(ValueError, match='--MemQuery whole'):
        ImageMemAE(7, arch='mnist', query='position').decode_slots()


def test_mlp_models():
    x = torch.rand(5, 118)
    ae = MLPAutoEncoder(118)
    assert ae(x).shape == x.shape
    widths = [m.out_features for m in ae.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [60, 30, 10, 3, 10, 30, 60, 118]
    assert isinstance(ae.encoder[-1], torch.nn.Linear) and isinstance(ae.decoder[-1], torch.nn.Linear)
    assert sum(isinstance(m, torch.nn.Tanh) for m in ae.modules()) == 6
    result = MLPMemAE(118, 50, 0.02)(x)
    assert result['output'].shape == x.shape and result['att'].shape == (5, 50)
    assert torch.all((result['att'] == 0) | (result['att'] >= 0.02 / result['att'].sum(1, keepdim=True)))
    assert EntropyLossEncap()(result['att']).item() >= 0
    paper = MLPMemAE(118).mem_rep  # the paper's KDDCUP99 memory: 50 slots of the 3-d encoding, lambda 1/50
    assert (paper.mem_dim, paper.fea_dim, paper.shrink_thres, paper.addressing, paper.temperature) == \
        (50, 3, 0.02, 'dot', 1.0)
    narrow = MLPMemAE(9, 4, 0.1, 'cosine', hidden=(6, 2))
    assert [m.out_features for m in narrow.modules() if isinstance(m, torch.nn.Linear)] == [6, 2, 6, 9]
    assert (narrow.mem_rep.fea_dim, narrow.mem_rep.addressing) == (2, 'cosine')
