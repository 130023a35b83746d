"""The Trainer's speed settings (methods/speed.py) change how it runs, never what it computes: conv weights and
images NHWC after every change of the network, compilation warmed up without touching the model."""

import torch

from benchmarks.studies.common import Quiet
from datasets import load_dataset
from methods.interface import Task
from methods.nets import NetSpec, build_network, parse_widths
from methods.speed import Speed
from methods.tiny import Tiny
from methods.train import TrainConfig, Trainer

CL = torch.channels_last


def conv_params(model):
    return [p for p in model.parameters() if p.dim() == 4]


def test_prepare_makes_conv_weights_channels_last_in_place_and_leaves_mlps_alone():
    vgg = build_network(NetSpec("vgg", parse_widths("1/64", "vgg"), (3, 32, 32), 10))
    before = conv_params(vgg)
    assert not all(p.is_contiguous(memory_format=CL) for p in before)
    Speed().prepare(vgg)
    after = conv_params(vgg)
    assert all(a is b for a, b in zip(before, after, strict=True))   # same Parameter objects: optimizers keep them
    assert all(p.is_contiguous(memory_format=CL) for p in after)
    mlp = build_network(NetSpec("mlp", (8,), (1, 4, 4), 4))
    assert Speed().layout(mlp) == torch.contiguous_format and Speed(channels_last=False).layout(vgg) != CL


def test_compile_now_leaves_batchnorm_statistics_and_gradients_as_they_were():
    data = load_dataset("synthetic-image")
    torch.manual_seed(0)
    model = build_network(NetSpec("resnet18", parse_widths("1/64", "resnet18"), data.input_shape, 10))
    trainer = Trainer(model, data, TrainConfig(epochs=1, batch_size=32), 0, Quiet())
    buffers = [b.clone() for b in model.buffers()]
    trainer.compile_now(data.x_train[:32], data.y_train[:32])
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers(), strict=True))
    assert all(p.grad is None for p in model.parameters())


def test_units_grown_before_training_are_channels_last_once_training_starts():
    # growth_steps=1: the only growth step is before any training, outside the Trainer's growth hook
    data = load_dataset("synthetic-image").in_memory_format(CL)
    spec = NetSpec("vgg", parse_widths("1/64", "vgg"), data.input_shape, 10)
    task = Task(data, spec, TrainConfig(epochs=1, batch_size=64), 0, torch.device("cpu"))
    method = Tiny(Tiny.Config(target="1/32", growth_steps=1, min_samples=64, max_samples=64,
                              line_search_samples=64, after_samples=0))
    model = method.run(task, Quiet()).model
    assert model.widths == parse_widths("1/32", "vgg")
    assert all(p.is_contiguous(memory_format=CL) for p in conv_params(model))


def test_a_network_changed_between_epochs_is_prepared_again_before_training():
    data = load_dataset("synthetic-image").in_memory_format(CL)
    model = build_network(NetSpec("vgg", parse_widths("1/64", "vgg"), data.input_shape, 10))
    trainer = Trainer(model, data, TrainConfig(epochs=1, batch_size=64), 0, Quiet())
    for p in conv_params(model):   # as a growth step outside the hook leaves new parameters: NCHW
        p.data = p.data.contiguous()
    trainer.prepared = ()          # ... at widths the trainer has not seen
    trainer.train_epoch()
    assert all(p.is_contiguous(memory_format=CL) for p in conv_params(model))


def test_a_hook_that_grows_nothing_costs_no_recompilation():
    data = load_dataset("synthetic")
    model = build_network(NetSpec("mlp", (8,), data.input_shape, data.num_classes))
    trainer = Trainer(model, data, TrainConfig(epochs=1, batch_size=64), 0, Quiet())
    calls = []
    trainer.refresh = lambda: calls.append(1)
    trainer.train_epoch(every=2, hook=lambda: None)   # 8 steps, a hook every 2: nothing grows
    assert calls == []
