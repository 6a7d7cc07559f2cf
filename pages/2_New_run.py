"""New run: turn widgets into a RunConfig, show its YAML and CLI command, and launch it.

The form starts from a config kept in the session (the task's default, a loaded YAML, or the data
picked on the Data page). Widget keys carry a version number: loading a YAML bumps it, so every
widget is recreated with the loaded values. Launch hands the config to the process-wide job
runner; a second launch while a run trains waits in its queue.
"""

import os
from dataclasses import replace

import streamlit as st

from lab.cli.flags import cli_command
from lab.config import (
    DATA_SOURCES,
    DEFAULT_MODEL,
    OPTIMIZERS,
    PEFT_METHODS,
    POOLINGS,
    PRECISIONS,
    RUN_EXECUTORS,
    SCHEDULERS,
    TAG_SCHEMES,
    TASKS,
    TRUST_REMOTE_CODE_WARNING,
    DataConfig,
    ModelConfig,
    PeftSettings,
    RunConfig,
    TrainConfig,
    config_field,
    default_config,
    settings_needing_consent,
)
from lab.data.builtin import BUILTINS
from lab.errors import LabError, Message, ModelError
from lab.hub import is_offline
from lab.methods.registry import method_spec
from lab.views.data_view import (
    SUGGESTED_MODELS,
    UPLOAD_TYPES,
    for_the_page,
    label_count,
    parameter_count,
    save_upload,
)
from lab.views.formatting import format_share
from ui import charts
from ui.common import (
    get_runner,
    get_store,
    launch,
    method_name,
    open_run,
    page_setup,
    task_name,
    upload_owner,
    user_errors,
    wait_for_training_stack,
)
from ui.i18n import field_help, message, t
from ui.lora_check import lora_check_section
from ui.lr_find import find_rate_now, learning_rate_field
from ui.widgets import (
    COLUMN_FIELDS,
    CONSENTED,
    code_span,
    column_mapping,
    config_widget,
    consent_checkbox,
    consent_text,
    consented,
)

OTHER_MODEL = "other"

page_setup("pages.new_run")
st.title(t("pages.new_run"))
state = st.session_state
if "form" not in state:
    state["form"], state["form-version"] = default_config("classification").to_dict(), 0
if "new-run-data" in state:  # "Train on this data" on the Data page
    handoff = state.pop("new-run-data")
    form = default_config(handoff["task"]).to_dict()
    form["data"] = {**form["data"], **handoff["data"]}
    state["form"], state["form-version"] = form, state["form-version"] + 1
base = RunConfig.from_dict(state["form"])
version = state["form-version"]


def key(name: str) -> str:
    return f"{name}-{version}"


def restart_form(config: RunConfig) -> None:
    state["form"], state["form-version"] = config.to_dict(), state["form-version"] + 1
    state.pop(CONSENTED, None)  # a new config is confirmed anew


def on_task_change() -> None:
    task = state[key("task")]
    fresh = default_config(task)
    fresh.model = base.model  # keep the chosen model; the data must change with the task
    restart_form(fresh)


def setting(section: str, name: str, value, label: str = "", **options):
    """The widget of config field `section.name` (its kind, bounds, step and label from the config's declaration)."""
    return config_widget(section, name, value, key(f"{section}.{name}"), label=label, **options)


def choice(section: str, name: str, options, value, **extra):
    return config_widget(section, name, value, key(f"{section}.{name}"), options=options, **extra)


def data_section(task: str) -> DataConfig:
    d = base.data
    files = st.radio(
        t("data.source"),
        ["builtin", "files"],
        index=1 if d.train_file else 0,
        format_func=lambda kind: t(f"form.source_{kind}"),
        key=key("data-kind"),
        horizontal=True,
    )
    data = DataConfig(
        source=d.source, validation_share=d.validation_share, test_share=d.test_share, tag_scheme=d.tag_scheme
    )
    if files == "builtin":
        names = [name for name, spec in BUILTINS.items() if spec.task == task]
        data.dataset = choice(
            "data",
            "dataset",
            names,
            d.dataset if d.dataset in names else names[0],
            format_func=lambda n: BUILTINS[n].title,
        )
    else:
        data.dataset = ""
        uploaded = st.file_uploader(t("form.upload"), key=key("upload"), type=UPLOAD_TYPES)
        uploaded_path = (
            str(save_upload(uploaded.name, uploaded.getvalue(), get_store().runs_dir, upload_owner()))
            if uploaded
            else ""
        )
        # The uploaded path is part of the key: a new upload makes a new field showing its path.
        data.train_file = st.text_input(
            t("field.data.train_file"),
            uploaded_path or d.train_file,
            key=key(f"data.train_file{uploaded_path}"),
            help=field_help("data", "train_file"),
        )
        left, right = st.columns(2)
        data.validation_file = left.text_input(
            t("field.data.validation_file"),
            d.validation_file,
            key=key("data.validation_file"),
            help=field_help("data", "validation_file"),
        )
        data.test_file = right.text_input(
            t("field.data.test_file"), d.test_file, key=key("data.test_file"), help=field_help("data", "test_file")
        )
        for name in COLUMN_FIELDS[task]:
            setattr(data, name, getattr(d, name))
        column_mapping(task, data, key)
    # Switching the source starts from its own sample sizes: all of a user's file, the built-in default's
    # sample of IMDB (2,000 / 500), never one carried over to the other.
    shown = key("data-source-shown")  # the source this form showed last, until a new form (a YAML, a task)
    switched, state[shown] = state.get(shown, files) != files, files
    left, right = st.columns(2)
    for column, name in ((left, "train_subset"), (right, "eval_subset")):
        with column:
            value = getattr(d, name)
            if switched:
                value = 0 if files == "files" else getattr(default_config(task).data, name)
            setattr(data, name, config_widget("data", name, value, key(f"data.{name}.{files}")))
    return data


def model_section() -> ModelConfig:
    m, offline = base.model, is_offline()
    options = [DEFAULT_MODEL, *SUGGESTED_MODELS, OTHER_MODEL]
    current = m.name_or_path if m.name_or_path in options else OTHER_MODEL
    labels = {
        DEFAULT_MODEL: t("form.model_offline"),
        OTHER_MODEL: t("form.model_other"),
        **{name: t("form.model_hub_offline" if offline else "form.model_hub", name=name) for name in SUGGESTED_MODELS},
    }
    picked = st.selectbox(
        t("field.model.name_or_path"),
        options,
        index=options.index(current),
        format_func=labels.get,
        key=key("model.choice"),
        help=field_help("model", "name_or_path"),
    )
    if picked == OTHER_MODEL:
        picked = st.text_input(
            t("form.model_id"),
            m.name_or_path if current == OTHER_MODEL else "",
            key=key("model.name_or_path"),
            placeholder="bert-base-uncased or /path/to/model",
        )
    return ModelConfig(
        name_or_path=picked.strip(), trust_remote_code=m.trust_remote_code, dropout=m.dropout, pooling=m.pooling
    )


def peft_section(task: str) -> PeftSettings:
    """The method, and the settings its registry record says it reads (lab.methods.registry)."""
    p = base.peft
    method = choice("peft", "method", PEFT_METHODS, p.method, format_func=method_name)
    spec = method_spec(method)
    peft = replace(p, method=method, target_modules=list(p.target_modules))
    in_columns = [name for name in spec.settings if config_field("peft", name).kind in ("whole", "number", "choice")]
    columns = st.columns(3)
    for index, name in enumerate(in_columns):
        with columns[index % 3]:
            label = t("form.target_rank") if (method == "adalora" and name == "r") else ""
            setattr(peft, name, setting("peft", name, getattr(p, name), label))
    for name in spec.settings:
        if name not in in_columns:  # checkboxes and module lists, the page's width
            setattr(peft, name, setting("peft", name, getattr(p, name)))
    if spec.builds == "adapter":
        st.caption(t("form.not_mergeable"))
    with st.container(border=True):  # what the method trains, what it freezes, its idea in one formula
        st.markdown(t(f"method.{method}.what"))
        from lab.model.defaults import ONE_CLICK_RESULTS

        measured = ONE_CLICK_RESULTS[task]
        if method not in measured["results"]:
            st.caption(t("form.not_measured", dataset=measured["dataset"]))
            return peft
        mean, spread = measured["results"][method]
        full, _ = measured["results"]["full"]
        seeds = len(measured["seeds"])
        words = dict(
            dataset=measured["dataset"],
            metric=measured["metric"],
            value=f"{mean:.3f}",
            seeds=seeds,
            spread=f" ± {spread:.3f}" if seeds > 1 else "",
        )
        if method == "full":
            st.caption(t("form.measured_full", **words))
        else:
            st.caption(t("form.measured", **words, full=f"{full:.3f}", gap=f"{mean - full:+.3f}"))
    return peft


@st.cache_data(show_spinner=False, max_entries=32)
def count(config_yaml: str, num_labels: int) -> tuple[int, int, list[dict]]:
    wait_for_training_stack()
    return parameter_count(RunConfig.from_yaml(config_yaml), num_labels)


def parameter_summary(config: RunConfig) -> str:
    """Show the trainable parameters; returns why the model cannot be used ('' when it can). With
    trust_remote_code, loading the model runs its code: that waits for the confirmation beside Launch."""
    if not consented(settings_needing_consent(config)):
        st.info(t("form.waits_for_consent", model=code_span(config.model.name_or_path)), icon=":material/lock:")
        return ""
    try:
        with st.spinner(t("form.counting")):
            trainable, total, parts = count(config.to_yaml(), label_count(config.data, config.task))
    except ModelError as exc:  # the run would fail the same way: say so, and Launch waits for a fix
        st.error(for_the_page(message(exc)), icon=":material/error:")
        return str(exc)
    except LabError as exc:
        st.warning(t("form.cannot_count_yet", reason=for_the_page(message(exc))), icon=":material/warning:")
        return ""
    except Exception as exc:  # noqa: BLE001 - the count is advice; a library surprise must not block the form
        st.warning(t("form.cannot_count", reason=f"{type(exc).__name__}: {exc}"), icon=":material/warning:")
        return ""
    left, right = st.columns([1, 3], vertical_alignment="center")
    left.metric(
        t("form.trainable"),
        f"{trainable:,}",
        t("form.share_of", share=format_share(trainable, total), total=f"{total:,}"),
        delta_color="off",
        delta_arrow="off",
    )
    right.plotly_chart(charts.parameters_by_part(parts), width="stretch", key="parameters-by-part")
    return ""


def training_section(task: str, peft: PeftSettings) -> TrainConfig:
    from lab.model.defaults import DEFAULT_LEARNING_RATES

    was = base.train
    train = TrainConfig(**{**was.__dict__})
    columns = st.columns(3)
    with columns[0]:
        default_lr = DEFAULT_LEARNING_RATES[task][peft.method]
        train.learning_rate = learning_rate_field(
            was.learning_rate,
            key("train.learning_rate"),
            placeholder=t("form.default_rate_for", rate=f"{default_lr:g}", method=method_name(peft.method)),
        )
    with columns[1]:
        train.train_batch_size = setting("train", "train_batch_size", was.train_batch_size)
    with columns[2]:
        train.epochs = setting("train", "epochs", was.epochs)
    return train


def advanced_section(config: RunConfig) -> None:
    from lab.model.defaults import head_learning_rate_for

    was, train, data = base.train, config.train, config.data
    with st.expander(t("form.advanced")):
        columns = st.columns(3)
        with columns[0]:
            train.lr_scheduler = choice("train", "lr_scheduler", SCHEDULERS, was.lr_scheduler)
            train.warmup_ratio = setting("train", "warmup_ratio", was.warmup_ratio)
            if config.peft.method != "head":  # head-only training's learning rate is the head's
                # With auto the head's default is read at the method's default rate: the test has not run yet.
                rate = None if train.finds_learning_rate else train.learning_rate
                unset = replace(config, train=replace(train, head_learning_rate=None, learning_rate=rate))
                default_head_rate = head_learning_rate_for(unset)
                train.head_learning_rate = setting(
                    "train",
                    "head_learning_rate",
                    was.head_learning_rate,
                    placeholder=t("form.default_rate", rate=f"{default_head_rate:g}"),
                )
            train.weight_decay = setting("train", "weight_decay", was.weight_decay)
            config.model.dropout = setting("model", "dropout", base.model.dropout, placeholder=t("form.models_own"))
            train.optimizer = choice("train", "optimizer", OPTIMIZERS, was.optimizer)
        with columns[1]:
            train.gradient_accumulation_steps = setting(
                "train", "gradient_accumulation_steps", was.gradient_accumulation_steps
            )
            train.max_length = setting("train", "max_length", was.max_length)
            train.precision = choice("train", "precision", PRECISIONS, was.precision)
            train.early_stopping_patience = setting("train", "early_stopping_patience", was.early_stopping_patience)
            train.max_steps = setting("train", "max_steps", was.max_steps)
        with columns[2]:
            train.seed = setting("train", "seed", was.seed)
            data.split_seed = setting("data", "split_seed", base.data.split_seed)
            train.eval_steps = setting("train", "eval_steps", was.eval_steps)
            train.logging_steps = setting("train", "logging_steps", was.logging_steps)
            train.eval_batch_size = setting("train", "eval_batch_size", was.eval_batch_size)
            train.num_devices = setting("train", "num_devices", was.num_devices, within=train)
            train.devices = setting("train", "devices", was.devices, placeholder="0, 1")
            data.source = choice("data", "source", DATA_SOURCES, base.data.source)
            if config.task == "classification":
                config.model.pooling = choice("model", "pooling", POOLINGS, base.model.pooling)
        if config.task == "ner" and data.train_file:
            data.tag_scheme = choice("data", "tag_scheme", TAG_SCHEMES, base.data.tag_scheme)
        train.gradient_checkpointing = setting("train", "gradient_checkpointing", was.gradient_checkpointing)
        config.model.trust_remote_code = setting("model", "trust_remote_code", base.model.trust_remote_code)
        if config.model.trust_remote_code:
            model = config.model.name_or_path
            warning = Message(TRUST_REMOTE_CODE_WARNING.format(model=model), "trust_remote_code", model=model)
            st.warning(message(warning), icon=":material/warning:")


def show_script(config: RunConfig) -> None:
    """The standalone script of this config (lab.publish.standalone), shown and downloadable."""
    from lab.publish.standalone import standalone_script

    try:
        script = standalone_script(config)
    except LabError as exc:
        st.caption(message(exc))
        return
    st.caption(t("form.script_caption"))
    st.download_button(
        t("form.download_script"),
        script,
        file_name="run.py",
        mime="text/x-python",
        icon=":material/download:",
        key="download-script",
    )
    st.code(script, language="python", height=360)


def config_files(config: RunConfig) -> None:
    st.subheader(t("form.as_file"))
    yaml_tab, cli_tab, script_tab, load_tab = st.tabs(
        ["YAML", t("form.command_line"), t("form.script"), t("form.load_yaml")]
    )
    with yaml_tab:
        st.code(config.to_yaml(), language="yaml", height=360)
        st.download_button(
            t("form.download_yaml"),
            config.to_yaml(),
            file_name="config.yaml",
            mime="application/x-yaml",
            icon=":material/download:",
        )
    with cli_tab:
        st.code(cli_command(config), language="bash")
    with script_tab:
        show_script(config)
    with load_tab:
        uploaded = st.file_uploader(t("form.yaml_upload"), type=["yaml", "yml"], key="yaml-upload")
        if uploaded is not None and state.get("yaml-loaded") != uploaded.file_id:
            state["yaml-loaded"] = uploaded.file_id
            with user_errors():
                # Validate before filling the form: a value outside a widget's range would break every rerun.
                loaded = RunConfig.from_yaml_bytes(uploaded.getvalue(), uploaded.name)
                restart_form(loaded.validate(check_paths=False))
                st.rerun()


@st.cache_data(show_spinner=False, max_entries=16)
def preflight(config_yaml: str) -> tuple[str, str, Message | None]:
    wait_for_training_stack()
    from lab.training.estimate import estimate

    result = estimate(RunConfig.from_yaml(config_yaml))
    return result.describe(), result.warning, result.budget_warning


def estimate_section(config: RunConfig) -> None:
    with st.expander(t("form.estimate_title"), icon=":material/timer:"):
        st.caption(t("form.estimate_caption"))
        if config.model.trust_remote_code and not consented(settings_needing_consent(config)):
            st.info(t("form.waits_for_consent", model=code_span(config.model.name_or_path)), icon=":material/lock:")
        elif st.button(t("form.estimate"), key="estimate"):
            with user_errors(), st.spinner(t("form.estimating")):
                config.validate()
                text, warning, budget_warning = preflight(config.to_yaml())
                st.text(text)
                if warning:
                    st.warning(warning, icon=":material/memory:")
                if budget_warning:
                    st.warning(message(budget_warning), icon=":material/speed:")


def where_section(config: RunConfig) -> None:
    """A choice of this machine or the Ray cluster, once a cluster is named (RAY_ADDRESS, or a loaded config)."""
    from lab.launch.ray_launcher import ADDRESS_ENV

    address = base.train.ray_address or os.environ.get(ADDRESS_ENV, "")
    if not address:
        return
    labels = {"local": t("form.where_local"), "ray": t("form.where_ray", address=address)}
    config.train.executor = st.radio(
        t("field.train.executor"),
        RUN_EXECUTORS,
        index=RUN_EXECUTORS.index(base.train.executor),
        format_func=labels.get,
        key=key("train.executor"),
        horizontal=True,
        help=field_help("train", "executor"),
    )
    config.train.ray_address = base.train.ray_address


def launch_section(config: RunConfig, model_problem: str) -> None:
    runner = get_runner()
    busy = runner.running() + runner.queued()
    if busy:
        st.info(t("form.busy", count=len(busy), runs=", ".join(busy)), icon=":material/hourglass_top:")
    needed = settings_needing_consent(config)
    confirmed = consent_checkbox(needed, key) if needed else True
    if st.button(
        t("form.launch"),
        type="primary",
        icon=":material/rocket_launch:",
        disabled=bool(model_problem),
        help=t("form.launch_blocked") if model_problem else None,
    ):
        if not confirmed:
            st.error(t("form.consent_first"), icon=":material/gpp_maybe:")
            return
        with user_errors():
            config.validate()
            run_id = launch(config)
            state["form"] = config.to_dict()
            open_run(run_id)


if settings_needing_consent(base):  # a loaded YAML (or the Advanced box) asks for code or places from elsewhere
    st.warning(
        t("form.consent_warning", what=consent_text(settings_needing_consent(base))), icon=":material/gpp_maybe:"
    )
with user_errors():
    left, right = st.columns([2, 1])
    name = left.text_input(
        t("field.name"), base.name, key=key("name"), help=field_help("", "name"), placeholder=t("form.name_example")
    )
    task = right.radio(
        t("form.task"),
        TASKS,
        index=TASKS.index(base.task),
        format_func=task_name,
        key=key("task"),
        on_change=on_task_change,
        horizontal=True,
    )
    st.subheader(t("pages.data"))
    data = data_section(task)
    st.subheader(t("form.model_and_method"))
    model = model_section()
    peft = peft_section(task)
    lora_check_section(RunConfig(task=task, data=data, model=model, peft=peft))
    model_problem = parameter_summary(RunConfig(task=task, data=data, model=model, peft=peft))
    st.subheader(t("form.training"))
    train = training_section(task, peft)
    config = RunConfig(task=task, name=name, data=data, model=model, peft=peft, train=train, tracking=base.tracking)
    advanced_section(config)
    state["form"] = config.to_dict()  # survives a visit to another page
    estimate_section(config)
    find_rate_now(config, disabled=not consented(settings_needing_consent(config)))
    where_section(config)
    launch_section(config, model_problem)
    config_files(config)
