"""How each peft-backed method builds its peft config from the run's PEFT settings.

Every builder takes the same four arguments: `settings` (anything with PeftSettings' attributes),
peft's task type, the modules to adapt (None: peft's own table for the architecture) and the run's
optimizer steps. This module imports no lab code and imports peft only when a builder runs, so the
method registry stays importable without peft and the standalone script inlines it as it is.
"""

from __future__ import annotations

from typing import Any, Optional


def lora(settings: Any, task_type: Any, targets: Optional[list[str]], total_steps: int) -> Any:
    import peft

    return peft.LoraConfig(
        task_type=task_type,
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=targets,
    )


def adalora(settings: Any, task_type: Any, targets: Optional[list[str]], total_steps: int) -> Any:
    import peft

    # AdaLoRA prunes ranks on a schedule over total_step; without it, it trains as plain LoRA.
    tinit = max(1, total_steps // 10)
    tfinal = max(1, total_steps // 5)
    return peft.AdaLoraConfig(
        task_type=task_type,
        init_r=settings.adalora_init_r,
        target_r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=targets,
        total_step=max(total_steps, tinit + tfinal + 1),
        tinit=tinit,
        tfinal=tfinal,
        deltaT=max(1, total_steps // 20),
    )


def ia3(settings: Any, task_type: Any, targets: Optional[list[str]], total_steps: int) -> Any:
    import peft

    # Modules the user names are all treated as attention-like (scaled on their output).
    return peft.IA3Config(
        task_type=task_type, target_modules=targets, feedforward_modules=None if targets is None else []
    )


def loha(settings: Any, task_type: Any, targets: Optional[list[str]], total_steps: int) -> Any:
    import peft

    return peft.LoHaConfig(
        task_type=task_type,
        r=settings.r,
        alpha=settings.alpha,
        module_dropout=settings.lora_dropout,
        target_modules=targets,
    )


def lokr(settings: Any, task_type: Any, targets: Optional[list[str]], total_steps: int) -> Any:
    import peft

    return peft.LoKrConfig(
        task_type=task_type,
        r=settings.r,
        alpha=settings.alpha,
        module_dropout=settings.lora_dropout,
        target_modules=targets,
    )


def prompt(settings: Any, task_type: Any, targets: Optional[list[str]], total_steps: int) -> Any:
    import peft

    return peft.PromptTuningConfig(task_type=task_type, num_virtual_tokens=settings.num_virtual_tokens)


def prefix(settings: Any, task_type: Any, targets: Optional[list[str]], total_steps: int) -> Any:
    import peft

    return peft.PrefixTuningConfig(task_type=task_type, num_virtual_tokens=settings.num_virtual_tokens)


PEFT_CONFIGS = {
    "lora": lora,
    "adalora": adalora,
    "ia3": ia3,
    "loha": loha,
    "lokr": lokr,
    "prompt": prompt,
    "prefix": prefix,
}
