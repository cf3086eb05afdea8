"""Train the Wav2Lip generator with the frozen expert, optionally with the quality discriminator.

setup() -> fit() -> validate(), as the reference wav2lip_train.py (no GAN) and
hq_wav2lip_train.py (GAN) do it (spec §5):

- total loss ``sw * sync + dw * adversarial + (1 - sw - dw) * L1``; the sync weight ``sw`` starts
  at ``syncnet_wt_initial`` (0) and is set for good to ``syncnet_wt`` the first time the eval
  sync loss falls below ``sync_threshold`` (0.75); ``dw`` is the GAN's 0.07 from step 0;
- the expert is frozen (no gradients) and, by default, left in train mode as the reference
  leaves it, so its BatchNorm uses the generated batch's statistics (``expert_bn: eval`` uses
  its running statistics instead);
- with the GAN, the discriminator takes one step per generator step on BCE(D(gt), 1) +
  BCE(D(G.detach()), 0);
- sample collages (reference | masked input | generated | ground truth) are written with every
  checkpoint, as ``samples_step{step:09d}/{b}_{t}.jpg``.

``init`` starts from any generator weights (an official checkpoint, for fine-tuning on one's own
footage); ``resume`` continues a run exactly (weights, optimizers, step, sync weight, RNG).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lipdub.models.weights import WeightsError
from lipdub.training.args import GeneratorArgs, to_dict
from lipdub.training.checkpoints import (
    DISC_PREFIX,
    checkpoint_path,
    latest_checkpoint,
    load_training_checkpoint,
    read_weights_for,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from lipdub.training.data import GeneratorDataset, make_loader
from lipdub.training.logging_utils import MetricsLog
from lipdub.training.losses import discriminator_losses, sync_loss
from lipdub.training.networks import build_discriminator, build_expert, build_generator
from lipdub.training.runtime import Precision, frozen, prepare_module, seed_everything, setup_device
from lipdub.training.train_expert import VAL_SEED_OFFSET

# --- losses -------------------------------------------------------------------------------------


def reconstruction_loss(generated: Tensor, target: Tensor) -> Tensor:
    """L1: mean absolute error over the whole (B, 3, T, 96, 96) output, as the reference."""
    return F.l1_loss(generated, target)


def adversarial_loss(disc, generated: Tensor) -> Tensor:
    """The generator's GAN term BCE(D(G), 1) over every lower half.

    The same value as ``QualityDiscriminator.perceptual_forward``, but through any ``disc``
    callable (e.g. one wrapped for mixed precision).
    """
    pred = disc(generated)
    return F.binary_cross_entropy(pred, torch.ones_like(pred))


def generator_loss(l1: Tensor, sync: Tensor, adversarial: Tensor, syncnet_wt: float,
                   disc_wt: float) -> Tensor:
    """``syncnet_wt * sync + disc_wt * adversarial + (1 - syncnet_wt - disc_wt) * l1``."""
    return syncnet_wt * sync + disc_wt * adversarial + (1.0 - syncnet_wt - disc_wt) * l1


# --- run state ----------------------------------------------------------------------------------


@dataclass
class GeneratorRun:
    """Everything a run holds between steps."""

    args: GeneratorArgs
    device: torch.device
    precision: Precision
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    expert: torch.nn.Module  # wrapped for mixed precision when AMP is on
    train_data: GeneratorDataset
    val_data: GeneratorDataset
    log: MetricsLog
    disc: torch.nn.Module | None = None  # the bare discriminator (for saving)
    disc_amp: torch.nn.Module | None = None  # the one to call
    disc_optimizer: torch.optim.Optimizer | None = None
    disc_scaler: torch.amp.GradScaler | None = None
    syncnet_wt: float = 0.0  # the current sync-loss weight
    global_step: int = 0
    global_epoch: int = 0
    history: list[dict] = field(default_factory=list)

    @property
    def out_dir(self) -> Path:
        return Path(self.args.out_dir)

    @property
    def disc_wt(self) -> float:
        return self.args.disc_wt if self.disc is not None else 0.0


def setup(args: GeneratorArgs) -> GeneratorRun:
    """Build the networks, optimizers, datasets and log; restore a checkpoint when resuming.

    Raises:
        DatasetError, WeightsError, LipdubError: bad data folder, checkpoint or device.
    """
    seed_everything(args.seed)
    device, channels_last = setup_device(args.device, args.channels_last, args.threads)
    precision = Precision(args.amp, device)
    data = args.data
    train_data = GeneratorDataset(data.root, data.train_list, fps=data.fps, seed=args.seed,
                                  img_size=data.img_size)
    val_data = GeneratorDataset(data.root, data.val_list, fps=data.fps,
                                seed=args.seed + VAL_SEED_OFFSET, img_size=data.img_size)

    expert, _ = read_weights_for(build_expert, args.expert, "expert")
    expert = frozen(prepare_module(expert, device, channels_last))
    expert.train(args.expert_bn == "train")

    if args.init:
        model, _ = read_weights_for(build_generator, args.init, "generator", args.width_divisor)
    else:
        model = build_generator(args.width_divisor)
    model = prepare_module(model, device, channels_last)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                                 lr=args.lr, betas=args.betas)
    run = GeneratorRun(args, device, precision, model, optimizer, precision.scaler(),
                       precision.wrap(expert), train_data, val_data, log=None,
                       syncnet_wt=args.syncnet_wt_initial)
    if args.gan:
        if args.disc_init:
            disc, _ = read_weights_for(build_discriminator, args.disc_init,
                                       "quality discriminator", args.width_divisor)
        else:
            disc = build_discriminator(args.width_divisor)
        run.disc = prepare_module(disc, device, channels_last)
        run.disc_amp = precision.wrap(run.disc)
        run.disc_optimizer = torch.optim.Adam([p for p in run.disc.parameters()
                                               if p.requires_grad],
                                              lr=args.disc_lr, betas=args.disc_betas)
        run.disc_scaler = precision.scaler()

    resume = latest_checkpoint(args.out_dir) if args.resume == "last" else args.resume
    if resume:
        _resume(run, Path(resume))
    for group in run.optimizer.param_groups:  # the run's settings win over the saved ones
        group["lr"] = args.lr
    if run.disc_optimizer is not None:
        for group in run.disc_optimizer.param_groups:
            group["lr"] = args.disc_lr
    run.log = MetricsLog(run.out_dir / "metrics.csv",
                         resume_step=run.global_step if resume else None)
    return run


def _resume(run: GeneratorRun, path: Path) -> None:
    checkpoint = load_training_checkpoint(path, run.model, run.optimizer, "generator")
    run.global_step, run.global_epoch = checkpoint["global_step"], checkpoint["global_epoch"]
    extra = checkpoint.get("lipdub") or {}
    # A reference checkpoint has no record of the switch: like the reference, start over at 0.
    run.syncnet_wt = float(extra.get("syncnet_wt", run.args.syncnet_wt_initial))
    if run.disc is not None:
        disc_path = checkpoint_path(path.parent, run.global_step, DISC_PREFIX)
        if not disc_path.is_file():
            raise WeightsError(f"{path}: the GAN run needs its discriminator checkpoint "
                               f"{disc_path.name} beside it, and it is missing")
        load_training_checkpoint(disc_path, run.disc, run.disc_optimizer,
                                 "quality discriminator")
    restore_rng_state(extra.get("rng"))


# --- steps --------------------------------------------------------------------------------------


def _batch_to(run: GeneratorRun, batch) -> tuple[Tensor, ...]:
    return tuple(t.to(run.device, non_blocking=True) for t in batch)


def train_step(run: GeneratorRun, batch) -> tuple[dict, Tensor]:
    """One generator step (and one discriminator step with the GAN).

    Returns:
        (the losses as floats, the generated batch for sample collages).
    """
    x, indiv_mels, mel, gt = _batch_to(run, batch)
    run.model.train()
    with run.precision.autocast():
        generated = run.model(indiv_mels, x)
    generated = generated.float()
    sw, dw = run.syncnet_wt, run.disc_wt
    zero = generated.new_zeros(())
    # As the reference: the expert only runs once its weight is on.
    sync = sync_loss(run.expert, mel, generated) if sw > 0 else zero
    if run.disc is not None:
        run.disc.train()
    adversarial = adversarial_loss(run.disc_amp, generated) if dw > 0 else zero
    l1 = reconstruction_loss(generated, gt)
    loss = generator_loss(l1, sync, adversarial, sw, dw)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    metrics = {"loss": float(loss.detach()), "l1": float(l1.detach())}
    if sw > 0:
        metrics["sync"] = float(sync.detach())
    if run.disc is not None:
        # The generator's backward also reached the discriminator: clear that before its step.
        run.disc_optimizer.zero_grad(set_to_none=True)
        real, fake = discriminator_losses(run.disc_amp, gt, generated)
        run.disc_scaler.scale(real + fake).backward()
        run.disc_scaler.step(run.disc_optimizer)
        run.disc_scaler.update()
        metrics.update(adversarial=float(adversarial.detach()), disc_real=float(real.detach()),
                       disc_fake=float(fake.detach()))
    return metrics, generated.detach()


@torch.no_grad()
def validate(run: GeneratorRun) -> dict:
    """Eval-mode L1, sync loss (and GAN losses) over a fixed set of val samples.

    The generator runs in eval mode; the expert keeps the mode chosen at setup (train mode by
    default, as in the reference).
    """
    run.model.eval()
    if run.disc is not None:
        run.disc.eval()
    totals: dict[str, float] = {}
    count = 0
    for batch in make_loader(run.val_data, run.args.batch_size, 0, run.args.eval_batches,
                             num_workers=run.args.data.num_workers):
        x, indiv_mels, mel, gt = _batch_to(run, batch)
        with run.precision.autocast():
            generated = run.model(indiv_mels, x)
        generated = generated.float()
        values = {"l1": reconstruction_loss(generated, gt),
                  "sync": sync_loss(run.expert, mel, generated)}
        if run.disc is not None:
            values["adversarial"] = adversarial_loss(run.disc_amp, generated)
            values["disc_real"], values["disc_fake"] = discriminator_losses(
                run.disc_amp, gt, generated)
        for name, value in values.items():
            totals[name] = totals.get(name, 0.0) + float(value) * len(x)
        count += len(x)
    return {name: total / max(count, 1) for name, total in totals.items()}


def run_validation(run: GeneratorRun) -> dict:
    """Evaluate, log, and switch the sync loss on once the eval sync loss is low enough."""
    metrics = validate(run)
    if metrics["sync"] < run.args.sync_threshold:
        run.syncnet_wt = run.args.syncnet_wt
    run.log.log(run.global_step, run.global_epoch, "eval", syncnet_wt=run.syncnet_wt, **metrics)
    run.history.append({"step": run.global_step, "syncnet_wt": run.syncnet_wt, **metrics})
    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    print(f"[generator] step {run.global_step}: eval {shown}; sync weight {run.syncnet_wt}",
          flush=True)
    return metrics


def save(run: GeneratorRun) -> Path:
    """Write the generator checkpoint (and the discriminator's first, with the GAN)."""
    if run.disc is not None:
        save_checkpoint(checkpoint_path(run.out_dir, run.global_step, DISC_PREFIX), run.disc,
                        run.disc_optimizer, run.global_step, run.global_epoch,
                        {"trainer": "quality_disc", "width_divisor": run.args.width_divisor})
    extra = {"trainer": "generator", "width_divisor": run.args.width_divisor,
             "syncnet_wt": run.syncnet_wt, "args": to_dict(run.args), "rng": rng_state()}
    return save_checkpoint(checkpoint_path(run.out_dir, run.global_step), run.model,
                           run.optimizer, run.global_step, run.global_epoch, extra)


def save_samples(out_dir: str | Path, step: int, x: Tensor, generated: Tensor, gt: Tensor,
                 count: int) -> Path | None:
    """Sample collages as the reference writes them: reference | masked | generated | truth.

    Arguments:
        x: (B, 6, T, 96, 96) inputs; generated, gt: (B, 3, T, 96, 96); all in [0, 1], BGR.
        count: batch items to write (0: none).

    Returns:
        The folder, or None when nothing was written.
    """
    if count <= 0:
        return None
    folder = Path(out_dir) / f"samples_step{step:09d}"
    folder.mkdir(parents=True, exist_ok=True)

    def images(t: Tensor) -> np.ndarray:  # (B, C, T, H, W) -> (B, T, H, W, C) uint8
        return (t[:count].detach().cpu().numpy().transpose(0, 2, 3, 4, 1) * 255.0).astype(
            np.uint8)

    inputs = images(x)
    collage = np.concatenate((inputs[..., 3:], inputs[..., :3], images(generated), images(gt)),
                             axis=-2)
    for b, frames in enumerate(collage):
        for t, frame in enumerate(frames):
            cv2.imwrite(str(folder / f"{b}_{t}.jpg"), frame)
    return folder


def fit(run: GeneratorRun) -> dict:
    """Train until ``max_steps``; evaluate and checkpoint on the reference's schedule.

    Returns:
        {"global_step", "syncnet_wt", "last_eval" (or None), "checkpoint"}.
    """
    args = run.args
    loader = make_loader(run.train_data, args.batch_size, run.global_step, args.max_steps,
                         num_workers=args.data.num_workers,
                         pin_memory=run.device.type == "cuda")
    running: dict[str, float] = {}
    count, tick, last_checkpoint = 0, time.perf_counter(), None
    for batch in loader:
        metrics, generated = train_step(run, batch)
        for name, value in metrics.items():
            running[name] = running.get(name, 0.0) + value
        count += 1
        run.global_step += 1
        run.global_epoch = run.global_step * args.batch_size // len(run.train_data)
        step = run.global_step

        if step % args.log_interval == 0 or step == args.max_steps:
            elapsed = time.perf_counter() - tick
            means = {k: v / count for k, v in running.items()}
            run.log.log(step, run.global_epoch, "train", syncnet_wt=run.syncnet_wt,
                        samples_per_s=count * args.batch_size / max(elapsed, 1e-9), **means)
            running, count, tick = {}, 0, time.perf_counter()
        # The eval comes first so that a checkpoint carries the sync weight it switched to.
        if step % args.eval_interval == 0 or (step == 1 and args.eval_at_start):
            run_validation(run)
        if (step % args.checkpoint_interval == 0 or (step == 1 and args.checkpoint_at_start)
                or step == args.max_steps):
            last_checkpoint = save(run)
            save_samples(run.out_dir, step, batch[0], generated, batch[3], args.sample_count)
            run.log.plot()
    run.log.plot()
    return {"global_step": run.global_step, "syncnet_wt": run.syncnet_wt,
            "last_eval": run.history[-1] if run.history else None,
            "checkpoint": str(last_checkpoint) if last_checkpoint else None}


def main(args: GeneratorArgs) -> dict:
    """setup -> fit; the returned dict is what :func:`fit` returns."""
    return fit(setup(args))
