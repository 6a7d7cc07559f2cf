"""`python -m bench.insight`: what the "inside the training" views and the TensorBoard tracker cost a run at
the one-click budget.

Times, on the one-click IMDB card's model and batch shape, what each adds to the work the run does
anyway: the data map's record of every training batch (a softmax and a gather over its logits) against a
training step; the projection's capture of the head's input during a validation evaluation and its PCA,
against that evaluation; AdaLoRA's rank read at an evaluation; TensorBoard's writes (the Trainer's
callback, flushed to the run's folder) at every logging step and every evaluation. Then the share of the
card's whole run (its optimizer steps and evaluations) each one adds.

    python -m bench.insight
    python -m bench.insight --repeats 10
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def timed(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def tensorboard_writes(config, label_names, repeats: int) -> tuple[float, float]:
    """The run's TensorBoard callback writing, as the Trainer calls it, one logging step's loss, rate and
    gradient norm, and one evaluation's metrics and per-label F1; each flushed to disk, as in a run."""
    import tempfile
    from types import SimpleNamespace

    from transformers import TrainingArguments

    from lab.training.trackers import LabTensorBoardCallback

    per_label = [{"label": name, "precision": 0.8, "recall": 0.8, "f1": 0.8} for name in label_names]
    scorer = SimpleNamespace(split="validation", last_per_label=per_label + [{"label": "macro avg", "f1": 0.8}])
    with tempfile.TemporaryDirectory() as folder:
        callback = LabTensorBoardCallback(Path(folder), config, scorer)
        args = TrainingArguments(output_dir=folder, report_to=[])
        state = SimpleNamespace(is_world_process_zero=True, global_step=0)
        callback._init_summary_writer(args)

        def log_step() -> None:
            state.global_step += 1
            callback.on_log(
                args, state, None, logs={"loss": 0.5, "learning_rate": 1e-3, "grad_norm": 1.2, "epoch": 0.5}
            )

        def log_evaluation() -> None:
            state.global_step += 1
            callback.on_log(
                args,
                state,
                None,
                logs={"eval_loss": 0.4, "eval_accuracy": 0.8, "eval_macro_f1": 0.8, "eval_runtime": 3.0, "epoch": 0.5},
            )
            callback.on_evaluate(args, state, None)

        costs = timed(log_step, 20 * repeats), timed(log_evaluation, 20 * repeats)
        callback.finish(Path(folder), "completed")
    return costs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.insight", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    import torch

    from lab.data.preprocessing import make_collator, tokenize_splits
    from lab.data.splits import load_splits
    from lab.events import discard
    from lab.groups.one_click import one_click_runs
    from lab.insight.dynamics import training_dynamics
    from lab.insight.projection import ProjectionCallback, head_module
    from lab.insight.ranks import adalora_ranks
    from lab.model.adapting import adapt
    from lab.model.loading import load_model, load_tokenizer
    from lab.training.trainer import total_optimizer_steps

    config = next(card.config for card in one_click_runs(offline=True) if card.key == "imdb")
    loaded = load_splits(config.data, config.task, config.data.split_seed, log=lambda message: None)
    tokenizer = load_tokenizer(config.model)
    tokenized = tokenize_splits(loaded.splits, tokenizer, config.task, config.train.max_length)
    collate = make_collator(config.task, tokenizer)
    steps = total_optimizer_steps(config, len(loaded.splits["train"]))
    evaluations = steps // config.train.eval_steps + 1  # the validation ones, and the test evaluation
    model, _ = adapt(load_model(config.model, config.task, loaded.label_names), config, steps)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = collate([tokenized["train"][i] for i in range(config.train.train_batch_size)])
    labels = batch.pop("labels")

    def step() -> None:
        model.train()
        loss = torch.nn.functional.cross_entropy(model(**batch).logits, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    model.train()
    logits = model(**batch).logits
    dynamics = training_dynamics(config.task, loaded)  # the run's own recorder
    indices = torch.arange(len(labels))
    validation = [
        collate([tokenized["validation"][i] for i in range(start, min(start + 64, len(tokenized["validation"])))])
        for start in range(0, len(tokenized["validation"]), 64)
    ]

    @torch.no_grad()
    def evaluate() -> None:
        model.eval()
        for chunk in validation:
            model(**{k: v for k, v in chunk.items() if k != "labels"})

    step_s = timed(step, args.repeats)
    record_s = timed(lambda: dynamics.record(0, indices, logits, labels), 50 * args.repeats)
    plain_eval_s = timed(evaluate, args.repeats)
    names = [loaded.label_names[label] for label in loaded.splits["validation"]["label"]]
    head = head_module(model)
    projection = ProjectionCallback(discard, head, names, lambda: "validation")
    state = type("State", (), {"global_step": 1})()
    head.eval()
    hidden = model.config.hidden_size
    chunks = [torch.randn(len(chunk["input_ids"]), hidden) for chunk in validation]

    def project() -> None:  # what an evaluation adds: the hook on every batch, then the PCA and the event
        for vectors in chunks:
            projection._capture(head, (vectors,))
        projection.on_evaluate(None, state, None)

    projection_s = timed(project, args.repeats)
    ada_config = config.with_overrides(["peft.method=adalora"])
    ada_model, _ = adapt(load_model(ada_config.model, ada_config.task, loaded.label_names), ada_config, steps)
    ranks_s = timed(lambda: adalora_ranks(ada_model), 20 * args.repeats)

    log_s, evaluation_log_s = tensorboard_writes(config, loaded.label_names, args.repeats)
    logs = steps // config.train.logging_steps

    run_s = steps * step_s + evaluations * plain_eval_s
    costs = {
        "data map (every training batch)": steps * record_s,
        "projection (every validation evaluation)": evaluations * projection_s,
        "AdaLoRA ranks (every evaluation)": evaluations * ranks_s,
        f"TensorBoard ({logs} logging steps, {evaluations} evaluations)": logs * log_s + evaluations * evaluation_log_s,
    }
    print(
        f"one-click IMDB: {steps} steps of {config.train.train_batch_size} x {config.train.max_length} tokens, "
        f"{evaluations} evaluations of {len(tokenized['validation'])} examples"
    )
    print(
        f"  training step {1000 * step_s:.0f} ms, data-map record {1000 * record_s:.2f} ms "
        f"({100 * record_s / step_s:.2f}% of a step)"
    )
    print(f"  evaluation {1000 * plain_eval_s:.0f} ms, projection capture and PCA {1000 * projection_s:.2f} ms")
    print(f"  AdaLoRA rank read {1000 * ranks_s:.2f} ms")
    print(
        f"  TensorBoard: a logging step's write {1000 * log_s:.2f} ms, an evaluation's (metrics and per-label F1) "
        f"{1000 * evaluation_log_s:.2f} ms"
    )
    print(f"  the run's steps and evaluations: about {run_s:.0f} s")
    for name, seconds in costs.items():
        print(f"  {name:<42} +{1000 * seconds:.1f} ms ({100 * seconds / run_s:.3f}% of the run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
