"""Turn measured arms into the JSON results and the printed table.

Every figure of an arm is the median over its repeats. Ratios divide real (non-padding) tokens per
second, so an arm that pads more gets no credit for it; a ratio above 1 means the lab (or the app)
is faster.
"""

from __future__ import annotations

import statistics
from typing import Any, Optional

from bench.arms import ARM_TITLES, ArmResult
from bench.meter import training_flops_per_token
from bench.workloads import Settings, Workload

# Below this share of the CPU its threads could use, an arm was slowed by other programs.
BUSY_CPU_SHARE = 0.75
# What the issue asks of the lab (measured here, never asserted in tests).
TARGETS = {
    "ner": {"lab_vs_textbook": 4.0, "lab_vs_trainer": 1.0},
    "imdb": {"lab_vs_textbook": 2.5, "lab_vs_trainer": 1.0},
    "app_vs_cli": 0.95,
    "mfu": 0.40,
}


def summarize_arm(runs: list[ArmResult], settings: Settings) -> dict[str, Any]:
    """Median figures of one arm over its repeats."""

    def median(values: list[Optional[float]]) -> Optional[float]:
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    measurements = [run.measurement for run in runs]
    first = measurements[0]
    tokens_per_second = median([m.real_tokens_per_second for m in measurements])
    flops_per_token = training_flops_per_token(
        first.non_embedding_params, first.num_layers, first.hidden_size, first.mean_real_length
    )
    model_tflops = tokens_per_second * flops_per_token / 1e12
    return {
        "examples_per_second": median([m.examples_per_second for m in measurements]),
        "real_tokens_per_second": tokens_per_second,
        "real_tokens_per_cpu_second": median([m.real_tokens_per_cpu_second for m in measurements]),
        "cpu_share": median([m.cpu_share for m in measurements]),
        "padding_share": median([m.padding_share for m in measurements]),
        "peak_memory_mb": median([run.peak_memory_mb for run in runs]),
        "wall_seconds": median([run.wall_seconds for run in runs]),
        "timed_seconds": median([m.seconds for m in measurements]),
        "timed_steps": first.timed_steps,
        "real_tokens": first.real_tokens,
        "positions": first.positions,
        "examples": first.examples,
        "model_tflops_per_second": model_tflops,
        "mfu": model_tflops / settings.peak_tflops if settings.peak_tflops else None,
        "runs_real_tokens_per_second": [m.real_tokens_per_second for m in measurements],
    }


def ratio(
    results: dict[str, dict[str, Any]], faster: str, slower: str, figure: str = "real_tokens_per_second"
) -> Optional[float]:
    if faster not in results or slower not in results or not results[slower][figure]:
        return None
    return results[faster][figure] / results[slower][figure]


def cpu_ratios(results: dict[str, dict[str, Any]], pairs: dict[str, tuple[str, str]]) -> dict[str, Optional[float]]:
    """The same ratios from tokens per CPU-second: a cross-check when other programs share the CPU."""
    return {
        key: ratio(results, faster, slower, "real_tokens_per_cpu_second") for key, (faster, slower) in pairs.items()
    }


def workload_summary(workload: Workload, settings: Settings, arms: dict[str, list[ArmResult]]) -> dict[str, Any]:
    results = {arm: summarize_arm(runs, settings) for arm, runs in arms.items() if arm != "app"}
    return {
        "task": workload.task,
        "dataset": workload.dataset,
        "max_length": workload.max_length,
        "batch_size": settings.batch_size(workload),
        "arms": results,
        "lab_vs_textbook": ratio(results, "lab", "textbook"),
        "lab_vs_trainer": ratio(results, "lab", "trainer"),
        "per_cpu_second": cpu_ratios(
            results, {"lab_vs_textbook": ("lab", "textbook"), "lab_vs_trainer": ("lab", "trainer")}
        ),
    }


def app_summary(workload: Workload, settings: Settings, arms: dict[str, list[ArmResult]]) -> dict[str, Any]:
    results = {arm: summarize_arm(arms[arm], settings) for arm in ("lab", "app")}
    return {
        "workload": workload.name,
        "cli": results["lab"],
        "app": results["app"],
        "ratio": ratio(results, "app", "lab"),
        "ratio_per_cpu_second": ratio(results, "app", "lab", "real_tokens_per_cpu_second"),
        "wall_ratio": results["lab"]["wall_seconds"] / results["app"]["wall_seconds"],
    }


# ---- printing -----------------------------------------------------------------------------------
def format_table(results: dict[str, Any], settings: Settings) -> str:
    spin = results["settings"].get("gomp_spincount")
    lines = [
        f"Fine-Tuning Lab benchmark: model {results['settings']['model']}, device {settings.device}, "
        f"{results['settings']['threads']} threads{f' (GOMP_SPINCOUNT={spin})' if spin else ''}, "
        f"peft {settings.peft}; {settings.timed_steps} timed steps after {settings.warmup_steps} warm-up, "
        f"median of {settings.repeats}"
    ]
    for name, summary in results["workloads"].items():
        lines += [
            "",
            f"{name}: {summary['dataset']}, max length {summary['max_length']}, batch {summary['batch_size']}",
            _arm_header(settings),
        ]
        lines += [_arm_row(arm, figures, settings) for arm, figures in summary["arms"].items()]
        for key, label in (("lab_vs_textbook", "lab vs textbook"), ("lab_vs_trainer", "lab vs bare Trainer")):
            lines.append(
                _ratio_line(label, summary[key], TARGETS.get(name, {}).get(key), summary["per_cpu_second"][key])
            )
        mfu = summary["arms"]["lab"]["mfu"]
        if mfu is not None:
            lines.append(
                f"  lab MFU: {mfu:.1%} of {settings.peak_tflops:g} TFLOP/s (target >= {TARGETS['mfu']:.0%} "
                f"on bert-base-sized bf16 training: {'met' if mfu >= TARGETS['mfu'] else 'NOT met'})"
            )
    if settings.device == "cpu":
        shares = [
            figures["cpu_share"] for summary in results["workloads"].values() for figures in summary["arms"].values()
        ]
        if shares and min(shares) < BUSY_CPU_SHARE:
            lines += [
                "",
                f"Note: some arms got only {min(shares):.0%} of the CPU time their {results['settings']['threads']} "
                f"threads could use: other programs are busy on this machine and the figures are noisy. "
                f"Repeat (--repeats 3), or try --threads 1.",
            ]
    app = results.get("app_vs_cli_detail")
    if app:
        lines += [
            "",
            f"app vs CLI ({app['workload']}): the same lab run through the job runner's thread with a "
            f"reader every {results['settings']['app_refresh_seconds']:g} s, vs in the foreground",
            _arm_header(settings),
            _arm_row("lab", app["cli"], settings),
            _arm_row("app", app["app"], settings),
            _ratio_line("app vs CLI", app["ratio"], TARGETS["app_vs_cli"], app["ratio_per_cpu_second"]),
            f"  wall time ratio (CLI / app): {app['wall_ratio']:.2f}",
        ]
    return "\n".join(lines)


def _arm_header(settings: Settings) -> str:
    mfu = "     MFU" if settings.peak_tflops else ""
    return (
        f"  {'arm':<14}{'examples/s':>11}{'real tok/s':>12}{'tok/CPU-s':>11}{'padding':>9}{'peak MB':>9}"
        f"{'wall s':>8}{'TFLOP/s':>9}{mfu}"
    )


def _arm_row(arm: str, figures: dict[str, Any], settings: Settings) -> str:
    peak = figures["peak_memory_mb"]
    mfu = f"{figures['mfu']:8.1%}" if figures.get("mfu") is not None else ""
    return (
        f"  {ARM_TITLES[arm]:<14}{figures['examples_per_second']:11.1f}{figures['real_tokens_per_second']:12.0f}"
        f"{figures['real_tokens_per_cpu_second']:11.0f}{figures['padding_share']:9.0%}"
        f"{'-' if peak is None else f'{peak:.0f}':>9}{figures['wall_seconds']:8.1f}"
        f"{figures['model_tflops_per_second']:9.3f}{mfu}"
    )


def _ratio_line(label: str, value: Optional[float], target: Optional[float], per_cpu: Optional[float] = None) -> str:
    if value is None:
        return f"  {label}: -"
    verdict = "" if target is None else f" (target >= {target:g}: {'met' if value >= target else 'NOT met'})"
    cpu = "" if per_cpu is None else f"; {per_cpu:.2f}x per CPU-second"
    return f"  {label}: {value:.2f}x real tokens/s{verdict}{cpu}"
