"""Live run: status, progress, loss and metric curves, per-label tables, confusion matrix, cancel, log.

The run id is in the URL (`?run=...`), so a reload or a shared link shows the same run, including
one started from the CLI. While the run is queued or running, the panel below redraws itself every
REFRESH_SECONDS from the run store (`st.fragment(run_every=...)`); when the run ends, the page
reruns once without the timer.
"""

import time

import pandas as pd
import streamlit as st

from lab.errors import LabError
from lab.runs.records import RunRecord
from lab.runs.resume import resume_refusal
from lab.training.metrics import is_average_row, primary_metric_name
from lab.views.data_map import REGIONS, hardest, load_data_map
from lab.views.formatting import clipped, format_share, plain_text
from lab.views.handout import trained_rates
from lab.views.history import folded_views
from lab.views.run_view import RunView, per_label_frame, rank_table
from ui import charts
from ui.common import (
    PLAYGROUND_PAGE,
    get_runner,
    get_store,
    method_name,
    page_setup,
    status_badge,
    status_name,
    task_name,
    user_errors,
    wait_for_training_stack,
)
from ui.handout import run_handout_button
from ui.i18n import duration, message, metric_name, t
from ui.lr_find import rate_test_section

REFRESH_SECONDS = 1.0
HARDEST_TEXT_CHARACTERS = 240  # of each hard example's text in the data map's table

page_setup("pages.live_run")
st.title(t("pages.live_run"))
store = get_store()


def choose_run() -> str | None:
    """The run named in the URL, else the newest active run, else the newest run; mirrored in the URL."""
    runs = store.list_runs(limit=200)
    if not runs:
        st.info(t("live.no_runs"))
        return None
    ids = [run.id for run in runs]
    wanted = st.query_params.get("run")
    if wanted and wanted not in ids:
        try:  # older than the newest 200: look it up by id
            runs.append(store.get_run(wanted))
            ids.append(wanted)
        except LabError:
            st.error(t("live.no_such_run", run=repr(wanted), folder=str(store.runs_dir)))
            wanted = None
    if not wanted:
        wanted = next((run.id for run in runs if run.is_active), ids[0])
    names = {run.id: f"{run.name} · {run.id}" for run in runs}
    chosen = st.selectbox(t("live.run"), ids, index=ids.index(wanted), format_func=names.get)
    st.query_params["run"] = chosen
    return chosen


def controls(run: RunRecord, view: RunView) -> None:
    where = f" · {t('live.on_ray')}" if run.executor == "ray" else ""
    st.caption(
        f"{task_name(run.task)} · {plain_text(run.dataset)} · {plain_text(run.model)} · {method_name(run.peft_method)}"
        f"{where} · `{run.id}`"
    )
    row = st.container(horizontal=True)
    # A run a teacher shared with the class is to follow, not to stop or restart.
    may_change = store.viewer is None or store.viewer.may_change(run)
    if may_change and run.is_active and row.button(t("live.cancel"), icon=":material/stop_circle:"):
        with user_errors():
            get_runner().cancel(run.id)
            st.toast(t("live.cancelling"))
            time.sleep(0.3)
            st.rerun()
    # The same rule as `lab resume`: no Resume for a run that failed before its first step.
    resumable = may_change and not resume_refusal(run, trained=view.last_step is not None or view.progress is not None)
    if resumable and row.button(t("live.resume"), icon=":material/replay:"):
        with user_errors():
            get_runner().resume(run.id)
            st.rerun()
    if run.status == "completed":
        row.page_link(PLAYGROUND_PAGE, label=t("live.try_it"), icon=":material/science:", query_params={"run": run.id})


def status_message(run: RunRecord, view: RunView) -> None:
    # The status event that recorded this state says why with a code a catalogue translates; a store
    # that no longer holds it has the row's English text.
    latest = view.last_status
    said = message(latest.said() if latest is not None and latest.status == run.status else run.message)
    if run.status == "queued":
        runner = get_runner()
        queued, running = runner.queued(), runner.running()
        if run.id in running:  # the runner took it; its thread has not marked it running yet
            st.info(t("live.starting"), icon=":material/hourglass_top:")
            return
        ahead = running + (queued[: queued.index(run.id)] if run.id in queued else [])
        # Other people's run ids are theirs: counted, not named.
        seen = {record.id for record in store.list_runs(limit=500)} if store.viewer is not None else set(ahead)
        named = [run_id for run_id in ahead if run_id in seen]
        text = t("live.queued_behind", count=len(ahead), runs=", ".join(named) or "…") if ahead else t("live.queued")
        st.info(text, icon=":material/hourglass_top:")
    elif run.status == "failed":
        st.error(said or t("live.failed"), icon=":material/error:")
        if run.traceback:
            with st.expander(t("live.bug_details")):
                st.code(run.traceback, language="text")
    elif run.status in ("cancelled", "interrupted"):
        st.warning(said or t("live.ended", status=status_name(run.status)), icon=":material/warning:")
    elif run.status == "completed":
        # The time as every other duration reads ("35 min 56 s"), in this page's units.
        took = t("messages.finished", duration=duration(view.result.wall_seconds)) if view.result else said
        st.success(took or t("status.completed"), icon=":material/check_circle:")


def progress(run: RunRecord, view: RunView) -> None:
    step = view.last_step
    if step is None:
        if run.is_active:
            stage = message(view.stage.said()) if view.stage and view.stage.message else t("messages.stage_loading")
            text = f"{stage[:1].upper()}{stage[1:]}…" if run.status == "running" else t("live.waiting")
            st.progress(0.0, text=text)
            if view.estimate is not None:  # until the measured pace gives an ETA
                st.caption(t("live.estimate", time=duration(view.estimate.total_seconds), device=view.device))
        return
    # Progress and ETA from the last optimizer step; the loss and speed from the last logged one.
    at = view.progress if view.progress and view.progress.step >= step.step else step
    done = 1.0 if run.status == "completed" else min(1.0, at.step / max(1, at.max_steps))
    eta = t("live.eta", eta=duration(at.eta_seconds)) if run.is_active and at.eta_seconds is not None else ""
    st.progress(done, text=t("live.progress", step=at.step, steps=at.max_steps, epoch=f"{at.epoch:.2f}") + eta)
    # A wrapping row: four across on a desktop, two by two on a phone.
    row = st.container(horizontal=True, gap="medium")
    row.metric(t("live.step"), f"{at.step} / {at.max_steps}", width=160)
    row.metric(t("live.tokens_per_second"), f"{step.tokens_per_second:,.0f}", width=160)
    metric = primary_metric_name(run.task)
    scores = view.evaluations[metric].tolist() if metric in view.evaluations else []
    change = scores[-1] - scores[-2] if len(scores) > 1 else 0.0
    row.metric(
        t("chart.validation_metric", metric=metric_name(metric)),
        f"{scores[-1]:.3f}" if scores else "–",
        f"{change:+.3f}" if abs(change) >= 5e-4 else None,
        width=160,
    )
    # The figure the training process itself reports: right for a worker process or a CLI run too.
    memory = step.memory_mb if run.is_active else None
    unit = t("live.gpu_memory") if view.device.startswith("cuda") else t("live.in_use")
    row.metric(
        t("live.device"),
        view.device or "–",
        f"{memory:,.0f} MB {unit}" if memory is not None else None,
        delta_color="off",
        delta_arrow="off",
        width=160,
    )


def label_table(per_label: list[dict]) -> None:
    # Every header in the page's language: st.table draws the frame's own column names (a Styler's relabels
    # do not reach it), so the columns are renamed before styling, the label column (the index) too.
    names = {name: t(f"table.{name}") for name in ("precision", "recall", "f1", "support")}
    frame = per_label_frame(per_label).rename_axis(t("table.label")).rename(columns=names)
    frame = frame.rename(index=lambda label: t(f"table.{label.replace(' ', '_')}") if is_average_row(label) else label)
    scores = {names[name]: "{:.3f}" for name in ("precision", "recall", "f1")}
    styled = frame.style.format({**scores, names["support"]: "{:,}"}).bar(
        subset=[names["f1"]], vmin=0, vmax=1, color=charts.palette()["table_bar"]
    )
    st.table(styled)


def curves(view: RunView, smoothing: float) -> None:
    left, right = st.columns(2)
    if view.steps.empty:
        left.caption(t("live.loss_soon"))
    else:
        left.plotly_chart(
            charts.training_loss(view.steps, smoothing, view.evaluations), key="loss-chart", width="stretch"
        )
    if view.evaluations.empty:
        right.caption(t("live.metrics_soon"))
    else:
        right.plotly_chart(
            charts.validation_metrics(view.evaluations, view.metric_names), key="eval-chart", width="stretch"
        )


def per_label(view: RunView, normalize: bool) -> None:
    latest = view.latest_eval
    if latest is None:
        return
    st.subheader(t("live.per_label"))
    left, right = st.columns(2)
    with left:
        st.caption(t("live.validation_at", step=latest.step, epoch=f"{latest.epoch:.2f}"))
        label_table(latest.per_label)
    right.plotly_chart(charts.label_f1_history(view.per_label_history), key="f1-chart", width="stretch")
    confusion = charts.confusion_heatmap(latest.confusion, normalize) if latest.confusion else None
    if confusion is not None and len(latest.confusion["labels"]) > 8:
        # Many labels (NER tags) need the full width to stay readable.
        st.plotly_chart(confusion, key="confusion-chart", width="stretch")
        left, right = st.columns(2)
        with left:
            results(view)
        return
    left, right = st.columns(2)
    if confusion is not None:
        left.plotly_chart(confusion, key="confusion-chart", width="stretch")
    with right:
        results(view)


def results(view: RunView) -> None:
    if view.test_eval is None:
        return
    st.markdown(f"**{t('live.test_set')}**")
    st.caption(t("live.test_caption"))
    st.markdown(" · ".join(f"{metric_name(name)} **{value:.3f}**" for name, value in view.test_eval.metrics.items()))
    label_table(view.test_eval.per_label)
    if view.result is not None:
        result = view.result
        memory = t("live.peak_memory", mb=f"{result.peak_memory_mb:,.0f}") if result.peak_memory_mb else ""
        share = format_share(result.trainable_params, result.total_params)
        st.caption(
            t(
                "live.trainable_of",
                trainable=f"{result.trainable_params:,}",
                total=f"{result.total_params:,}",
                share=share,
            )
            + f" · {duration(result.wall_seconds)}{memory}"
        )


def inside(run: RunRecord, view: RunView, live: bool) -> None:
    """What the model does inside: AdaLoRA's rank budget, the validation vectors moving apart, the data map.
    While the run is live the latest frame shows; when it has ended a slider goes through them."""
    data = None if live else load_data_map(store.output_dir(run))
    if not (view.ranks or view.projections or data is not None):
        return
    st.subheader(t("live.inside"))
    if view.ranks:
        steps = sorted(view.ranks)
        step = steps[-1] if live or len(steps) == 1 else st.select_slider(t("live.ranks_at"), steps, steps[-1])
        st.caption(t("live.ranks_caption"))
        st.plotly_chart(charts.rank_heatmap(rank_table(view.ranks[step]), step), key="ranks-chart", width="stretch")
    if view.projections:
        frames = {event.step: event for event in view.projections}
        steps = sorted(frames)
        step = steps[-1] if live or len(steps) == 1 else st.select_slider(t("live.projection_at"), steps, steps[-1])
        ranges = tuple(
            _padded([point[axis] for event in view.projections for point in event.points]) for axis in (0, 1)
        )
        st.caption(t("live.projection_caption"))
        st.plotly_chart(
            charts.projection(frames[step].points, frames[step].labels, step, ranges),
            key="projection-chart",
            width="stretch",
        )
    if data is not None:
        over_evaluations = data.attrs["evaluations"] > 0  # a short run's within-epoch map
        st.markdown(f"**{t('live.data_map_evaluations' if over_evaluations else 'live.data_map')}**")
        if data.attrs["epochs"] < 2 and not over_evaluations:
            st.caption(t("live.data_map_one_epoch"))
            return
        regions = {region: int((data["region"] == region).sum()) for region in REGIONS}
        if over_evaluations:
            caption = t(
                "live.data_map_caption_evaluations", evaluations=data.attrs["evaluations"], sample=len(data), **regions
            )
        elif run.task == "classification":
            caption = t("live.data_map_caption", epochs=data.attrs["epochs"], **regions)
        else:
            caption = t("live.data_map_caption_ner", epochs=data.attrs["epochs"], **regions)
        st.caption(caption)
        left, right = st.columns(2)
        left.plotly_chart(charts.data_map(data), key="data-map-chart", width="stretch")
        # A table that wraps: each example's text readable (a review cut to a few lines), not a 15-character cell.
        examples = hardest(data)
        shown = pd.DataFrame(
            {
                t("live.text"): examples["text"].map(lambda text: clipped(text, HARDEST_TEXT_CHARACTERS)),
                t("table.label" if run.task == "classification" else "live.entities"): examples["label"],
                t("live.confidence"): examples["confidence"].map(lambda value: f"{value:.2f}"),
                t("live.spread"): examples["variability"].map(lambda value: f"{value:.2f}"),
                t("live.region"): examples["region"].map(lambda region: t(f"chart.region.{region}")),
            }
        )
        with right:
            st.table(shown, hide_index=True, height=460)


def _padded(values: list[float]) -> list[float]:
    """An axis range over every frame's points, 5% wider on each side."""
    margin = 0.05 * (max(values) - min(values) or 1.0)
    return [min(values) - margin, max(values) + margin]


def script(run_id: str, view: RunView) -> None:
    wait_for_training_stack()  # the script's module imports transformers, which the warm-up may be importing
    from lab.publish.standalone import standalone_script

    try:  # at the rates the run trained at; an auto rate its range test never found has no script
        code = standalone_script(store.load_config(run_id), *trained_rates(view.started))
    except LabError as exc:
        st.caption(message(exc))
        return
    st.caption(t("form.script_caption"))
    st.download_button(
        t("form.download_script"),
        code,
        file_name=f"{run_id}.py",
        mime="text/x-python",
        icon=":material/download:",
        on_click="ignore",
        key="download-script",
    )
    st.code(code, language="python", height=360)


def folded_events(run_id: str) -> RunView:
    """This session's view of the run, fed only the events after its cursor: a refresh reads what is new."""
    return folded_views(st.session_state.setdefault("run-folders", {}), store, [run_id])[run_id]


def panel(run_id: str, was_live: bool, smoothing: float, normalize: bool) -> None:
    with user_errors():  # a fragment rerun runs only this function: it needs its own error display
        draw(run_id, was_live, smoothing, normalize)


def draw(run_id: str, was_live: bool, smoothing: float, normalize: bool) -> None:
    run = store.get_run(run_id)
    if was_live and not run.is_active:
        st.rerun()  # the run ended: redraw the whole page once, without the refresh timer
    view = folded_events(run_id)
    st.markdown(f"### {plain_text(run.name)} {status_badge(run.status)}")  # the name as typed, never Markdown
    controls(run, view)
    status_message(run, view)
    progress(run, view)
    rate_test_section(view)
    curves(view, smoothing)
    per_label(view, normalize)
    inside(run, view, was_live)
    if not was_live:  # drawn once, not at every refresh of a live run
        with st.expander(t("live.script"), icon=":material/code:"):
            script(run_id, view)
        run_handout_button(st, store, run_id)
    with st.expander(t("live.log", lines=len(view.log)), expanded=run.status == "failed"):
        st.code("\n".join(view.log[-400:]) or t("live.empty"), language="text")
    if was_live:
        st.caption(
            t(
                "live.refreshes",
                seconds=f"{REFRESH_SECONDS:g}",
                time=f"{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d}",
            )
        )


with user_errors():
    run_id = choose_run()
    if run_id:
        run = store.get_run(run_id)
        with st.sidebar:
            smoothing = st.slider(t("live.smoothing"), 0.0, 0.95, 0.6, 0.05, help=t("live.smoothing_help"))
            # NER's "O" row dwarfs every other count: shares keep the entity rows readable.
            normalize = st.toggle(t("live.as_shares"), value=run.task == "ner", help=t("live.as_shares_help"))
        live = run.is_active
        st.fragment(run_every=REFRESH_SECONDS if live else None)(panel)(run_id, live, smoothing, normalize)
