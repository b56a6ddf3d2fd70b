"""The CUDA paths (marker `gpu`; scripts/gpu_check.sh runs them): forward/backward per backbone
family, AMP, channels_last and compile against eager, eval and predict on the GPU against the
CPU, ONNX Runtime's CUDA provider, checkpoints moving between GPU and CPU, SyncBatchNorm under
DDP.

Without a CUDA GPU every test is skipped with the reason. FCN_GPU_TESTS_ON_CPU=1 runs them with
the CPU standing in for the GPU: a dry run of the test code itself, not a check of CUDA.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers.trained import eval_cfg

from fcn.core.normalization import normalize_image
from fcn.data import VOCSegmentation
from fcn.deploy.model_files import load_model
from fcn.deploy.tie_check import untied_differences
from fcn.evaluate import evaluate
from fcn.training.metrics import SegmentationMetrics
from fcn.training.module import SegmentationModule

pytestmark = pytest.mark.gpu

REPO = Path(__file__).resolve().parents[1]
NUM_CLASSES = 6
DRY_RUN = os.environ.get("FCN_GPU_TESTS_ON_CPU") == "1"
NO_GPU = (
    "no CUDA GPU (torch.cuda.is_available() is False); bash scripts/gpu_check.sh runs these "
    "on a GPU machine (FCN_GPU_TESTS_ON_CPU=1: a dry run on CPU)"
)


@pytest.fixture
def gpu() -> Iterator[torch.device]:
    """The GPU, with TF32 off so its fp32 results compare with the CPU's; skips without one."""
    if not torch.cuda.is_available():
        if not DRY_RUN:
            pytest.skip(NO_GPU)
        yield torch.device("cpu")
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def accelerator(device: torch.device) -> str:
    return "gpu" if device.type == "cuda" else "cpu"


def small_trainer(device: torch.device, **kw) -> L.Trainer:
    return L.Trainer(
        accelerator=accelerator(device),
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        **kw,
    )


@pytest.fixture(scope="module")
def checkpoint(ckpt: Path) -> Path:
    """FCN-8s/ResNet-18 after 3 CPU steps at a tiny lr (conftest's `ckpt`: varied predictions)."""
    return ckpt


def val_images(root: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(normalised 1x3xHxW image, 1xHxW mask) for each val image of the tiny tree."""
    dataset = VOCSegmentation(root, "val", num_classes=NUM_CLASSES)
    return [(image[None], mask[None]) for image, mask in (dataset[i] for i in range(len(dataset)))]


# ---- model -------------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", ["resnet18", "vgg16", "mobilenet_v2", "mobilenet_v3_large"])
def test_forward_backward_on_gpu_for_every_backbone_family(gpu, backbone):
    torch.manual_seed(0)
    module = SegmentationModule(backbone, "fcn8s", NUM_CLASSES).to(gpu).train()
    images = torch.randn(2, 3, 97, 131, device=gpu)  # not multiples of 32: padded and cropped
    masks = torch.randint(0, NUM_CLASSES, (2, 97, 131), device=gpu)
    logits = module(images)
    assert logits.shape == (2, NUM_CLASSES, 97, 131) and logits.device.type == gpu.type
    torch.nn.functional.cross_entropy(logits, masks).backward()
    grads = [p.grad for p in module.parameters() if p.requires_grad]
    assert all(g is not None and g.device.type == gpu.type for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_amp_training_losses_are_finite(gpu, precision, tiny_datamodule):
    if precision == "bf16-mixed" and gpu.type == "cuda" and not torch.cuda.is_bf16_supported():
        pytest.skip(f"{torch.cuda.get_device_name()} has no bf16")
    torch.manual_seed(0)
    module = SegmentationModule("resnet18", "fcn8s", NUM_CLASSES)
    losses: list[float] = []

    class Losses(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            losses.append(float(outputs["loss"]))

    trainer = small_trainer(gpu, max_steps=3, precision=precision, callbacks=[Losses()])
    trainer.fit(module, datamodule=tiny_datamodule)
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert all(torch.isfinite(p).all() for p in module.parameters())


# ---- evaluation and prediction: GPU against CPU --------------------------------------------------
def test_eval_on_gpu_equals_cpu_on_the_same_checkpoint(gpu, checkpoint, tiny_voc, tmp_path):
    pairs = val_images(tiny_voc)
    untied = 0
    cpu_net = load_model(checkpoint, "torch", "cpu").network
    gpu_net = load_model(checkpoint, "torch", gpu).network
    cpu_metrics, gpu_metrics = SegmentationMetrics(NUM_CLASSES), SegmentationMetrics(NUM_CLASSES)
    with torch.no_grad():
        for image, mask in pairs:
            ref, got = cpu_net(image), gpu_net(image.to(gpu)).cpu()
            untied += untied_differences(ref, got)
            cpu_metrics.update(ref, mask)
            gpu_metrics.update(got, mask)
    matrices = [cpu_metrics.compute()["confmat"], gpu_metrics.compute()["confmat"]]
    assert untied == 0  # classes differ only where the CPU's two best logits tie
    assert (
        matrices[0].diagonal() > 0
    ).sum() >= 2  # not a one-class model: the check means something

    # fcn-eval end to end on each device (Lightning moves the model there).
    results = []
    for device in ("cpu", accelerator(gpu)):
        out = tmp_path / device
        cfg = eval_cfg(checkpoint, tiny_voc, out, f"trainer.accelerator={device}")
        evaluate(cfg)
        results.append(json.loads((out / "metrics.json").read_text()))
    cpu_result, gpu_result = results
    assert gpu_result["num_images"] == cpu_result["num_images"] == len(pairs)
    for key in ("mIoU", "pixel_acc", "mean_acc", "fwIoU"):
        assert gpu_result[key] == pytest.approx(cpu_result[key], abs=1e-3), key


def test_predict_on_gpu_equals_cpu(gpu, checkpoint, tiny_voc):
    from fcn import load_segmenter

    jpgs = sorted((tiny_voc / "JPEGImages").glob("*.jpg"))[:4]
    cpu_seg = load_segmenter(checkpoint, device="cpu")
    gpu_seg = load_segmenter(checkpoint, device=gpu)
    cpu_net = load_model(checkpoint, "torch", "cpu").network
    for jpg in jpgs:
        a, b = cpu_seg.predict(jpg), gpu_seg.predict(jpg)
        if (a != b).any():  # allowed only where the logits tie
            from fcn.deploy.image_files import read_rgb

            with torch.no_grad():
                ref = cpu_net(normalize_image(read_rgb(jpg))[None])
            diff = torch.from_numpy(a != b)
            assert not (diff & (_gaps(ref) > 1e-3)).any(), jpg.name


def _gaps(logits: torch.Tensor) -> torch.Tensor:
    top2 = logits.topk(2, dim=1).values[0]
    return top2[0] - top2[1]


def test_onnx_runtime_cuda_provider_predicts_as_cpu(gpu, checkpoint, tiny_voc, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    if gpu.type == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(
            f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (providers: "
            f"{ort.get_available_providers()}): pip install onnxruntime-gpu to check it"
        )
    from fcn import load_segmenter
    from fcn.deploy.exporters import write_export
    from fcn.deploy.model_files import rebuild_module
    from fcn.deploy.model_info import ModelInfo

    module = rebuild_module(checkpoint)
    info = ModelInfo.from_module(module, module.checkpoint_hyper_parameters)
    onnx_path = write_export(
        module.model.eval(), "onnx", tmp_path / "m.onnx", info.to_metadata("onnx")
    )
    on_gpu = load_segmenter(onnx_path, device=gpu)
    expected = "CUDAExecutionProvider" if gpu.type == "cuda" else "CPUExecutionProvider"
    assert on_gpu.loaded.network.session.get_providers()[0] == expected  # no silent CPU fallback
    cpu_seg = load_segmenter(checkpoint, device="cpu")
    cpu_net = load_model(checkpoint, "torch", "cpu").network
    from fcn.deploy.image_files import read_rgb

    for jpg in sorted((tiny_voc / "JPEGImages").glob("*.jpg"))[:4]:
        a, b = cpu_seg.predict(jpg), on_gpu.predict(jpg)
        with torch.no_grad():
            ref = cpu_net(normalize_image(read_rgb(jpg))[None])
        assert not (torch.from_numpy(a != b) & (_gaps(ref) > 1e-3)).any(), jpg.name


# ---- checkpoints move between devices ------------------------------------------------------------
def test_checkpoint_written_on_gpu_resumes_on_cpu_and_back(gpu, tiny_datamodule, tmp_path):
    def fit(device: torch.device, steps: int, resume: Path | None) -> Path:
        torch.manual_seed(0)
        module = SegmentationModule("resnet18", "fcn8s", NUM_CLASSES)
        trainer = small_trainer(device, max_steps=steps)
        trainer.fit(module, datamodule=tiny_datamodule, ckpt_path=resume, weights_only=True)
        assert trainer.global_step == steps  # continued from the checkpoint's step
        state = trainer.optimizers[0].state
        assert state and all(
            v.device.type == device.type for s in state.values() for v in s.values()
        )
        assert all(torch.isfinite(p).all() for p in module.parameters())
        path = tmp_path / f"{device.type}_{steps}.ckpt"
        trainer.save_checkpoint(path)
        return path

    on_gpu = fit(gpu, 2, None)
    on_cpu = fit(torch.device("cpu"), 3, on_gpu)
    fit(gpu, 4, on_cpu)


# ---- several GPUs ------------------------------------------------------------------------------
def test_sync_batchnorm_under_ddp_on_gpus(gpu, tmp_path):
    count = torch.cuda.device_count()
    if count < 2:
        pytest.skip(f"SyncBatchNorm under DDP needs 2 GPUs; {count} visible")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO / "tests" / "helpers"), os.environ.get("PYTHONPATH")])
        ),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fcn.train",
            "trainer=ddp",
            f"trainer.devices={count}",
            "trainer.sync_batchnorm=true",
            f"data.root={tmp_path / 'cache'}",
            "data.synthetic.num_train=8",
            "data.synthetic.num_val=2",
            "data.synthetic.size=[64,64]",
            "data.crop_size=[64,64]",
            "data.batch_size=2",
            "data.num_workers=0",
            "trainer.max_steps=2",
            "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false",
            "logger=none",
            "test_after_fit=false",
            "+callbacks.sync_bn._target_=sync_bn_probe.SyncBatchNormProbe",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    layers = [
        line for line in result.stdout.splitlines() if line.startswith("SyncBatchNorm layers:")
    ]
    assert layers and int(layers[0].split(":")[1]) > 0, result.stdout[-2000:]


# ---- fast paths against eager ------------------------------------------------------------------
# Last in the file: compiling takes the longest, and a check cut short by its budget loses least.
@pytest.mark.parametrize("switch", ["channels_last", "compile"])
def test_channels_last_and_compile_predict_as_eager(gpu, switch):
    torch.manual_seed(0)
    eager = SegmentationModule("resnet18", "fcn8s", NUM_CLASSES).to(gpu).eval()
    fast = SegmentationModule("resnet18", "fcn8s", NUM_CLASSES, **{switch: True}).to(gpu).eval()
    fast.load_state_dict(eager.state_dict())
    images = torch.randn(2, 3, 96, 128, device=gpu)
    with torch.no_grad():
        expected, got = eager(images), fast(images)
    torch.testing.assert_close(got, expected, atol=1e-3, rtol=1e-3)
    assert untied_differences(expected, got) == 0
