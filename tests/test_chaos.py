"""A short `python -m bench.chaos`: a worker killed with SIGKILL at random moments of two phases.

After each kill the store opens with integrity ok, the run says interrupted (never running), resume
completes it with the test metrics of the same run left alone, and a run stored before is unchanged.
"""

from __future__ import annotations

import random

import pytest

from bench.chaos import kill_once, reference_run


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir):
    work = tmp_path_factory.mktemp("chaos")
    reference_result, lengths, _ = reference_run(work, tiny_model_dir)
    return work, reference_result, lengths


@pytest.mark.parametrize("phase", ["checkpoint", "final save"])
def test_a_run_killed_in_any_phase_is_interrupted_then_resumes_to_the_same_result(phase, reference, tiny_model_dir):
    work, reference_result, lengths = reference
    outcome = kill_once(work, tiny_model_dir, phase, lengths.get(phase, 0.0), reference_result, random.Random(phase))
    assert outcome.integrity == "ok"
    assert outcome.others_intact
    if outcome.landed == "done" and outcome.status_after_kill == "completed":  # it finished before the kill
        return
    assert outcome.status_after_kill == "interrupted"
    assert outcome.resumed == "completed"
    assert outcome.metric_difference is not None and outcome.metric_difference <= 1e-6, outcome
    assert outcome.weight_difference is not None and outcome.weight_difference <= 1e-4, outcome  # the same weights
    # Killed while the first checkpoint was being written, the run starts over (the cut-off folder is
    # dropped); killed during the final save, the last checkpoint is complete and the run resumes from it.
    if phase == "final save" and outcome.landed == phase:
        assert outcome.resumed_from == "checkpoint"


def test_a_run_killed_in_its_second_epoch_resumes_on_the_batches_it_would_have_trained(reference, tiny_model_dir):
    # 96 training examples in batches of 8: the second epoch starts at step 13, and step 17 is logged only
    # after checkpoint-16 was written. The length-grouped order of the resumed epoch used to be drawn from
    # the global RNG before the Trainer restored its state, so the resumed run trained on other batches.
    work, reference_result, _ = reference
    outcome = kill_once(work, tiny_model_dir, "training", 0.0, reference_result, random.Random(17), after_step=17)
    assert outcome.status_after_kill == "interrupted"
    assert outcome.resumed == "completed"
    assert outcome.resumed_from == "checkpoint"
    assert outcome.weight_difference is not None and outcome.weight_difference <= 1e-4, outcome
