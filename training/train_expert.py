"""Train the SyncNet expert lip-sync discriminator (spec §3; the reference color_syncnet_train.py).

setup() -> fit() -> validate(): 5-frame lower-half windows against 0.2 s mel chunks, positives
and negatives from the same video, BCE on the cosine similarity, Adam at 1e-4 without schedule.
Evaluation reports the loss and the off-sync detection accuracy (a pair is called in sync when
the cosine exceeds 0.5).

Usage::

    from lipdub.training.args import ExpertArgs, load_args
    from lipdub.training.train_expert import main
    main(load_args(ExpertArgs, "expert", ["data.root=data/lrs2"]))
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lipdub.training.args import ExpertArgs, to_dict
from lipdub.training.checkpoints import (
    checkpoint_path,
    latest_checkpoint,
    load_training_checkpoint,
    read_weights_for,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from lipdub.training.data import ExpertDataset, make_loader
from lipdub.training.logging_utils import MetricsLog
from lipdub.training.losses import cosine_loss
from lipdub.training.networks import build_expert
from lipdub.training.runtime import Precision, prepare_module, seed_everything, setup_device

VAL_SEED_OFFSET = 10_007  # val draws never share a seed with train draws


@dataclass
class ExpertRun:
    """Everything a run holds between steps."""

    args: ExpertArgs
    device: torch.device
    precision: Precision
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    train_data: ExpertDataset
    val_data: ExpertDataset
    log: MetricsLog
    global_step: int = 0
    global_epoch: int = 0
    history: list[dict] = field(default_factory=list)  # eval results of this session

    @property
    def out_dir(self) -> Path:
        return Path(self.args.out_dir)


def setup(args: ExpertArgs) -> ExpertRun:
    """Build the model, optimizer, datasets and log; restore a checkpoint when resuming.

    Raises:
        DatasetError, WeightsError, LipdubError: bad data folder, checkpoint or device.
    """
    seed_everything(args.seed)
    device, channels_last = setup_device(args.device, args.channels_last, args.threads)
    precision = Precision(args.amp, device)
    train_data = ExpertDataset(args.data.root, args.data.train_list, fps=args.data.fps,
                               seed=args.seed, img_size=args.data.img_size)
    val_data = ExpertDataset(args.data.root, args.data.val_list, fps=args.data.fps,
                             seed=args.seed + VAL_SEED_OFFSET, img_size=args.data.img_size)
    if args.init:
        model, _ = read_weights_for(build_expert, args.init, "expert", args.width_divisor)
    else:
        model = build_expert(args.width_divisor)
    model = prepare_module(model, device, channels_last)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)

    step = epoch = 0
    resume = latest_checkpoint(args.out_dir) if args.resume == "last" else args.resume
    if resume:
        checkpoint = load_training_checkpoint(resume, model, optimizer, "expert")
        step, epoch = checkpoint["global_step"], checkpoint["global_epoch"]
        restore_rng_state((checkpoint.get("lipdub") or {}).get("rng"))
    _set_lr(optimizer, args.lr)
    log = MetricsLog(Path(args.out_dir) / "metrics.csv", resume_step=step if resume else None)
    return ExpertRun(args, device, precision, model, optimizer, precision.scaler(), train_data,
                     val_data, log, step, epoch)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    # A resumed optimizer keeps its saved lr; the run's own setting wins (fine-tuning schedules).
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_step(run: ExpertRun, batch) -> float:
    """One optimiser step on a batch; returns the loss."""
    x, mel, y = (t.to(run.device, non_blocking=True) for t in batch)
    run.model.train()
    with run.precision.autocast():
        audio_emb, face_emb = run.model(mel, x)
    loss = cosine_loss(audio_emb.float(), face_emb.float(), y)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return float(loss.detach())


@torch.no_grad()
def validate(model: torch.nn.Module, data: ExpertDataset, *, batches: int, batch_size: int,
             device: torch.device, precision: Precision | None = None,
             num_workers: int = 0) -> dict:
    """Eval-mode loss and off-sync detection accuracy over a fixed set of val samples.

    The same ``batches * batch_size`` samples are drawn at every evaluation, so successive
    figures compare like with like.

    Returns:
        {"loss", "accuracy" (both classes), "acc_in_sync", "acc_off_sync", "samples"}.
    """
    model.eval()
    precision = precision or Precision("off", device)
    losses, correct, counts = [], {0: 0, 1: 0}, {0: 0, 1: 0}
    for batch in make_loader(data, batch_size, 0, batches, num_workers=num_workers):
        x, mel, y = (t.to(device) for t in batch)
        with precision.autocast():
            audio_emb, face_emb = model(mel, x)
        audio_emb, face_emb = audio_emb.float(), face_emb.float()
        losses.append(float(cosine_loss(audio_emb, face_emb, y)) * len(y))
        similarity = torch.nn.functional.cosine_similarity(audio_emb, face_emb)
        called = (similarity > 0.5).long().cpu()
        truth = y[:, 0].long().cpu()
        for label in (0, 1):
            mask = truth == label
            counts[label] += int(mask.sum())
            correct[label] += int((called[mask] == label).sum())
    total = counts[0] + counts[1]
    return {
        "loss": sum(losses) / max(total, 1),
        "accuracy": (correct[0] + correct[1]) / max(total, 1),
        "acc_in_sync": correct[1] / max(counts[1], 1),
        "acc_off_sync": correct[0] / max(counts[0], 1),
        "samples": total,
    }


def save(run: ExpertRun) -> Path:
    extra = {"trainer": "expert", "width_divisor": run.args.width_divisor,
             "args": to_dict(run.args), "rng": rng_state()}
    path = checkpoint_path(run.out_dir, run.global_step)
    return save_checkpoint(path, run.model, run.optimizer, run.global_step, run.global_epoch,
                           extra)


def run_validation(run: ExpertRun) -> dict:
    args = run.args
    metrics = validate(run.model, run.val_data, batches=args.eval_batches,
                       batch_size=args.batch_size, device=run.device, precision=run.precision,
                       num_workers=args.data.num_workers)
    run.log.log(run.global_step, run.global_epoch, "eval", loss=metrics["loss"],
                accuracy=metrics["accuracy"], acc_in_sync=metrics["acc_in_sync"],
                acc_off_sync=metrics["acc_off_sync"])
    run.history.append({"step": run.global_step, **metrics})
    print(f"[expert] step {run.global_step}: eval loss {metrics['loss']:.4f}, off-sync accuracy "
          f"{metrics['accuracy']:.3f} (in-sync {metrics['acc_in_sync']:.3f}, off-sync "
          f"{metrics['acc_off_sync']:.3f})", flush=True)
    return metrics


def fit(run: ExpertRun) -> dict:
    """Train until ``max_steps``; evaluate and checkpoint on the reference's schedule.

    Returns:
        {"global_step", "last_eval" (or None), "checkpoint" (the last one written)}.
    """
    args = run.args
    loader = make_loader(run.train_data, args.batch_size, run.global_step, args.max_steps,
                         num_workers=args.data.num_workers,
                         pin_memory=run.device.type == "cuda")
    running, count, tick, last_checkpoint = 0.0, 0, time.perf_counter(), None
    for batch in loader:
        running += train_step(run, batch)
        count += 1
        run.global_step += 1
        run.global_epoch = run.global_step * args.batch_size // len(run.train_data)
        step = run.global_step

        if step % args.log_interval == 0 or step == args.max_steps:
            elapsed = time.perf_counter() - tick
            run.log.log(step, run.global_epoch, "train", loss=running / count,
                        samples_per_s=count * args.batch_size / max(elapsed, 1e-9))
            running, count, tick = 0.0, 0, time.perf_counter()
        # Evaluate before saving, so that a checkpoint's step has its eval row in the log.
        if step % args.eval_interval == 0 or (step == 1 and args.eval_at_start):
            run_validation(run)
        if (step % args.checkpoint_interval == 0 or (step == 1 and args.checkpoint_at_start)
                or step == args.max_steps):
            last_checkpoint = save(run)
            run.log.plot()
    run.log.plot()
    return {"global_step": run.global_step,
            "last_eval": run.history[-1] if run.history else None,
            "checkpoint": str(last_checkpoint) if last_checkpoint else None}


def main(args: ExpertArgs) -> dict:
    """setup -> fit; the returned dict is what :func:`fit` returns."""
    return fit(setup(args))
