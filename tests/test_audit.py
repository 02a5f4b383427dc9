"""The bad-input and newcomer audit of every surface: each case found, the test that fails if it comes back.

Data lost or corrupted
  tune --out proj deletes a proj/best/ it did not write -> test_tune::test_tune_never_replaces_a_best_folder_it_did_not_write,
      test_bad_inputs::test_bad_input[tune_best_not_written_by_the_study]
  train --overwrite on a full disk deletes the old run first -> test_run_folder::test_a_full_disk_at_any_write_of_an_overwrite_keeps_the_old_run_byte_identical
  two trainings into one --out both exit 0 -> test_run_folder::test_a_second_writer_is_refused_and_a_killed_writers_lock_and_folder_are_taken_over
  synth --out overwrites an existing data file -> test_bad_inputs::test_bad_input[synth_onto_an_existing_file]
Security
  tune's SQLite URL built from the folder name ('g?', '%2F..') -> test_tune::test_the_study_folder_name_is_a_path_never_url_syntax
Silent wrong answers
  Parquet folder, epoch ints in one file and datetimes in another -> test_readers::test_folder_with_epoch_ints_in_one_file_and_datetimes_in_another_is_one_line
  Parquet files in subfolders skipped -> test_readers::test_hive_folder_reads_every_file_and_its_partition_columns
  03/01/2024 read day-first -> test_readers::test_day_month_dates_are_an_error_naming_the_column_and_a_value
  recommend(users="u1") iterated -> test_api_args::test_bad_argument[users_bare_string]
  recommend_history("i1") iterated -> test_api_args::test_bad_argument[history_bare_string]
  users=[1.0] / np.array([1.0]) fall back to popularity -> test_api_args::test_integral_floats_and_array_types_are_the_integer_ids
  pd.Series([1, None]) -> test_api_args::test_bad_argument[users_pandas_gap]
  exclude_seen="no" taken as True -> test_api_args::test_bad_argument[exclude_seen_string]
  mode="bad" ignored when every user is unknown -> test_api_args::test_bad_argument[mode_bad_all_cold]
  seen items padding a long list (score -3.4e38) -> test_api_args::test_exclude_seen_never_returns_a_seen_item
  fusion_weights=1_0,2 read as 10 -> test_bad_inputs::test_bad_input[train_config_fusion_weights_underscore] (fixed here)
  edited items.json not detected -> test_api_args::test_an_edited_run_folder_is_refused_naming_the_file
  config.json missing a key loads with today's default -> test_api_args::test_an_edited_run_folder_is_refused_naming_the_file
Raw exceptions
  recommend(users=5) / users=[["u1"]] / mode="bad" -> test_api_args::test_bad_argument[users_bare_int, users_nested_list, mode_bad]
  recommend_history(None) -> test_api_args::test_bad_argument[history_none]
  save("") / save("file/sub") / load(None) -> test_api_args::test_bad_argument[save_empty, save_under_a_file, load_none]
  an edited histories.parquet (IndexError) -> test_api_args::test_an_edited_run_folder_is_refused_naming_the_file
  read-only disk (train --overwrite, tune, synth) -> test_run_folder::test_a_read_only_folder_is_one_line_and_changes_nothing
  full disk (train --overwrite, tune, synth) -> test_run_folder::test_a_full_disk_at_any_write_of_an_overwrite_keeps_the_old_run_byte_identical,
      test_run_folder::test_a_full_disk_is_one_line_for_tune_and_synth_and_keeps_what_was_there
  synth --out '' -> test_bad_inputs::test_bad_input[synth_out_empty]
  recommend --users <(...) (internal error) -> test_bad_inputs::test_bad_input[recommend_users_is_a_pipe] (fixed here)
  train --data <(...) -> test_bad_inputs::test_bad_input[train_data_is_a_pipe]
  a failed tune trial prints Optuna's traceback; re-running gives "Record does not exist"
      -> test_tune::test_a_failed_trial_is_one_line_and_the_search_goes_on
  synth --rows 1000000000 (MemoryError) -> test_bad_inputs::test_bad_input[synth_more_rows_than_memory]
  synth --rows 100 --items 100000000 (7.1 GB) -> test_bad_inputs::test_bad_input[synth_more_items_than_rows]
      (more items than rows is refused before anything is allocated)
Also
  a killed tune trial stays RUNNING, resume repeats its values -> test_tune::test_an_interrupted_trial_is_marked_failed_and_the_resumed_search_draws_new_values
  another --space on an existing study mixed in -> test_tune::test_an_interrupted_trial_is_marked_failed_and_the_resumed_search_draws_new_values
  a SIGKILLed writer's hidden temp file -> test_run_folder::test_the_temporary_file_of_a_killed_write_is_removed_by_the_next_write_to_that_path
  the server parses text/plain bodies -> test_serve::test_non_json_content_type_is_415
  the server waits on a body shorter than Content-Length -> test_serve::test_body_limit_answers_a_short_body_instead_of_waiting,
      test_serve::test_real_server_closes_a_connection_whose_body_is_short
Ids changed without a word
  005461 read as 5461 -> test_readers::test_leading_zero_ids_keep_their_text_like_pandas_with_dtype_str
  C005461 users on an integer run, all cold -> test_api_args::test_cli_users_file_of_another_id_type
  skus numeric in some rows, text in others -> test_readers::test_numbers_in_some_rows_and_text_in_others_are_one_id_per_text
Newcomer frictions
  leaderboard.png leaves out the fused model -> test_leaderboard::test_leaderboard_end_to_end (fixed here)
  Recommender.fit silent -> test_api_args::test_fit_shows_a_progress_bar_on_a_terminal_and_quiet_hides_it,
      test_api_args::test_fit_prints_nothing_when_not_a_terminal (fixed here)
  load() polars where fit gave pandas -> test_api_args::test_frames_follow_the_documented_rule (load(frame="pandas"))
  fusion_weights typed by hand from metrics.json's dict -> test_audit::test_fusion_weights_as_metrics_json_holds_them (fixed here)
  one epoch line per epoch; warmup_steps > max_steps silent -> test_train::test_few_epoch_lines_and_one_warmup_warning
  train --help without an events example, stray line -> test_train::test_train_help_keeps_comments_together_and_shows_an_events_example
  OpenAPI 0.1.0, /docs from a CDN -> test_serve::test_openapi_version_is_the_package_version_and_no_cdn_docs
  curves.png shows the GPT alone where metrics.json is fused -> test_audit::test_curves_of_a_fused_run_draw_the_shipped_figure
Issue 29 (lifecycle surfaces: filter files, the server's deny list, outputs, degenerate data)
  a deny/allow file without a header: its first id taken as the header -> test_filters::test_filter_files_of_every_shape_match_a_brute_force_filter_on_every_path,
      test_filters::test_a_first_line_the_run_knows_is_an_id_on_an_integer_run
  server deny list: emptied / truncated file kept one item, old-mtime rewrite unseen, a gone file unsaid
      -> test_filters::test_the_server_deny_list_reloads_by_content_and_keeps_the_last_good_one,
      test_filters::test_a_real_server_reloads_its_deny_list_by_content
  recommend --out /dev/null replaced the device, /dev/stdout the link -> test_run_folder::test_out_that_is_a_fifo_or_a_link_into_proc_is_written_to_never_replaced
  tune --overwrite deleted the folder best/ linked to -> test_run_folder::test_tune_overwrite_replaces_a_best_link_never_the_folder_it_points_to
  --resume appended through a train.log link -> test_run_folder::test_a_log_in_a_run_folder_that_is_a_link_is_never_appended_through
  recommend / update --data a FIFO or <(zcat ...) hung -> test_readers::test_recommend_and_update_read_a_fifo_once,
      test_readers::test_a_pipe_is_read_as_a_stream_by_its_first_bytes, test_bad_inputs::test_bad_input[recommend_data_pipe_of_no_known_format]
  target_filter leaving no target, weights 1e-50 hung; 1e39 IndexError 4294967295
      -> test_bad_inputs::test_bad_input[train_target_filter_leaves_no_training_target, train_weight_zero_in_float32,
      train_weight_inf_in_float32, train_weights_sum_beyond_float32]
  seen items padding lists at -3.4e38 (k = catalogue, an allow list of 8; "never filled" said)
      -> test_filters::test_lists_never_end_with_seen_items_at_k_the_catalogue_or_with_an_allow_list,
      test_filters::test_the_inspect_page_lists_no_seen_item_at_k_the_catalogue
Tests that cannot fail (replaced)
  test_bad_inputs test_table_is_large_enough -> test_bad_inputs::test_every_command_has_cases (fixed here)
  test_data's row count -> test_data::test_removing_the_named_row_makes_the_input_load
  test_tune number in (0, 1), "test" in best -> test_tune::test_three_trials_never_see_test_targets_before_the_winner
  test_leaderboard 0 <= NDCG@10 <= HR@10 <= 1 -> test_leaderboard::test_leaderboard_end_to_end
Stale text
  rundir "the only code that reads them back", "every file written atomically" -> test_audit::test_rundir_lists_every_run_file_and_says_which_are_appended
  README bf16 "slower than fp32 unless compiled" -> test_audit::test_readme_bf16_figures_are_the_measured_ones
  README "about 14 minutes a seed" -> test_audit::test_readme_beauty_training_seconds_are_the_recorded_ones
  "no GPU" hard-coded in machine strings -> test_audit::test_leaderboard_machine_names_the_gpu (fixed here)
  README's Files lacks synth_cli.py -> test_audit::test_readme_files_lists_every_module (fixed here)
"""
from __future__ import annotations

import json
import os
import re

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")


def _readme() -> str:
    return open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()


def test_readme_files_lists_every_folder_and_top_module():
    """The Files section shows the layout: a line for every folder of nanorec/, and the few
    modules at its top (api, cli, config, errors), so a newcomer finds the room for a change."""
    files = _readme().split("## Files", 1)[1].split("```")[1]
    pkg = os.path.join(ROOT, "nanorec")
    folders = {f for f in os.listdir(pkg) if os.path.isfile(os.path.join(pkg, f, "__init__.py"))}
    listed_folders = set(re.findall(r"^  ([a-z_]+)/ ", files, re.M))
    assert folders == listed_folders, f"README's Files: folders {sorted(folders ^ listed_folders)}"
    top = {f for f in os.listdir(pkg) if f.endswith(".py") and f != "__init__.py"}
    missing = sorted(top - set(re.findall(r"([a-z_]+\.py)", files)))
    assert not missing, f"README's Files section lacks {', '.join(missing)} (nanorec/)"


def test_the_layers_import_downward():
    """commands/ is the top floor: no module outside it (cli.py dispatches by name) imports a
    command, and every folder says what it holds in its __init__ docstring."""
    import ast
    pkg = os.path.join(ROOT, "nanorec")
    for folder, _, names in os.walk(pkg):
        rel = os.path.relpath(folder, pkg)
        for name in names:
            if not name.endswith(".py"):
                continue
            tree = ast.parse(open(os.path.join(folder, name), encoding="utf-8").read())
            if name == "__init__.py" and rel != ".":
                assert ast.get_docstring(tree), f"nanorec/{rel}/__init__.py: no docstring"
            if rel == "commands":
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    module = node.module or ""
                    names_ = {a.name for a in node.names}
                    assert not module.split(".")[-1:] == ["commands"] and ".commands" not in "." + module \
                        and "commands" not in (names_ if module in ("", "nanorec") else set()), \
                        f"nanorec/{rel}/{name}:{node.lineno} imports from commands/"


def test_fusion_weights_as_metrics_json_holds_them():
    """A validated run's metrics.json weights, given as they are, fix the same weights as the text key."""
    from nanorec import Recommender
    from nanorec.config import WEIGHT_NAMES
    from nanorec.scoring.fusion import SIGNALS
    assert WEIGHT_NAMES == SIGNALS
    chosen = {"transitions": 0.2, "cooccurrence": 0.3, "content": 0.0}  # metrics.json's fusion.weights
    as_text = Recommender(fusion_weights="0.2,0.3,0.0").config.fusion_weights
    assert Recommender(fusion_weights=chosen).config.fusion_weights == "0.2,0.3,0.0" == as_text
    assert Recommender(fusion_weights=(0.2, 0.3)).config.fusion_weights == "0.2,0.3"
    from nanorec.config import parse_weights
    assert parse_weights(Recommender(fusion_weights=chosen).config.fusion_weights) == (0.2, 0.3, 0.0)


def test_leaderboard_machine_names_the_gpu(monkeypatch):
    import torch

    from nanorec.commands.leaderboard import machine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")
    assert machine().endswith("NVIDIA H200") and "no GPU" not in machine()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert machine().endswith("no GPU")


def test_readme_bf16_figures_are_the_measured_ones():
    path = os.path.join(ROOT, "benchmarks", "results", "gpu_beauty_compile.json")
    steps = {k: v["ms_per_step"] for k, v in json.load(open(path))["throughput"].items()}
    m = re.search(r"bf16 is\s+slower than fp32 even compiled \(([\d.]+) ms a step compiled vs ([\d.]+) eager fp32, "
                  r"([\d.]+) eager bf16", _readme())
    assert m, "README's bf16 sentence changed: check it against gpu_beauty_compile.json"
    assert [float(x) for x in m.groups()] == [steps["sdpa bf16 compile"], steps["sdpa fp32"], steps["sdpa bf16"]]
    assert steps["sdpa bf16 compile"] > steps["sdpa fp32"]  # what the sentence says


def test_readme_beauty_training_seconds_are_the_recorded_ones():
    rows = json.load(open(os.path.join(ROOT, "benchmarks", "results", "seeds_beauty.json")))["rows"]
    seconds = [r["train_seconds"] for r in rows]
    m = re.search(r"Beauty: ([\d,]+) to ([\d,]+) s in\s+\[seeds_beauty.json\]", _readme())
    assert m, "README's Beauty training time changed: check it against seeds_beauty.json"
    assert [int(x.replace(",", "")) for x in m.groups()] == [int(min(seconds)), round(max(seconds))]  # 1456.5, 2485.8


def test_rundir_lists_every_run_file_and_says_which_are_appended(tmp_path):
    """rundir's docstring names every file a run folder holds (curves.png included), makes no claim to be
    the only reader, and names the two logs appended instead of written atomically."""
    from nanorec.runs import rundir
    doc = rundir.__doc__
    assert "only code" not in doc
    listed = {line.split()[0].rstrip(",") for line in doc.splitlines() if line.startswith("    ") and line.split()}
    listed |= {name for line in doc.splitlines() for name in re.findall(r"[a-z_]+\.[a-z]+", line)
               if line.startswith("    ")}
    assert set(rundir.RUN_FILES) <= listed, set(rundir.RUN_FILES) - listed
    appended = " ".join(doc[doc.index("Every file is written"):].split("\n\n")[0].split())
    assert "except the two logs" in appended and rundir.HISTORY in appended and rundir.LOG in appended
    assert "curves.png" in rundir.RUN_FILES  # report.py writes it: the list names it


@pytest.mark.slow
def test_curves_of_a_fused_run_draw_the_shipped_figure(tmp_path, monkeypatch):
    """The curves are the GPT's; a fused run's curves.png also draws metrics.json's fused validation NDCG@10."""
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    from nanorec.config import Config
    from nanorec.data.synthetic import write_csv
    from nanorec.core.train import run
    lines = []
    original = matplotlib.axes.Axes.axhline
    monkeypatch.setattr(matplotlib.axes.Axes, "axhline",
                        lambda self, y=0, *a, **k: (lines.append((y, k.get("label"))), original(self, y, *a, **k))[1])
    log = write_csv(str(tmp_path / "log.csv"), num_users=80, num_items=15, seed=3)
    cfg = Config(data=log, n_layer=1, n_head=1, n_embd=16, block_size=8, max_steps=20, eval_interval=10,
                 warmup_steps=2, batch_size=16, progress=False, threads=1)
    metrics = run(cfg, str(tmp_path / "run"), quiet=True)
    assert "fusion" in metrics
    fused = metrics["valid"]["NDCG@10"]
    assert lines and all(y == fused and "shipped (fused)" in label for y, label in lines)
    assert os.path.getsize(tmp_path / "run" / "curves.png") > 0
