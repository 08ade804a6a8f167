"""Tables 1-3 and 6-8 from fixture records with known numbers: exact cells, missing data, and well-formed LaTeX."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench.report.build import analyze_folder
from bench.report.figures import write_captions
from bench.report.stats import Analysis
from bench.report.tables import (
    Table,
    episode_table,
    improvement_table,
    latex_text,
    override_notes,
    parameter_table,
    score_table,
    spread_table,
    time_table,
    to_latex,
    to_markdown,
)
from tests.report_fixtures import (
    DATASETS,
    as_algorithm,
    fixture_records,
    in_group,
    make_record,
    record_path,
    scores_without,
    write_fixture,
    write_grid_file,
    write_records,
)

REPS = 200
HALFCHEETAH = "d4rl:halfcheetah-medium-v2"
HOPPER = "d4rl:hopper-medium-v2"


def analysis_of(root: Path, **kwargs) -> Analysis:
    return analyze_folder(root, baseline="mlp", reps=REPS, seed=0, **kwargs)


def markdown_rows(table: Table) -> dict[str, list[str]]:
    """First cell -> the other cells, as the Markdown shows them."""
    rows = {}
    for line in to_markdown(table).splitlines():
        if line.startswith("| ") and not line.startswith("| :"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture(scope="module")
def complete(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    root = tmp_path_factory.mktemp("complete")
    write_fixture(root)
    return analysis_of(root)


def test_table1_prints_the_known_cells(complete: Analysis) -> None:
    table = score_table(complete)
    rows = markdown_rows(table)
    assert rows["Dataset"] == ["mlp", "kan"]  # the baseline first
    assert rows["halfcheetah-medium-v2"] == ["**47.0 ± 0.2**", "45.0 ± 1.0"]
    assert rows["hopper-medium-v2"] == ["**60.0 ± 5.0**", "59.0 ± 1.0"]
    assert rows["Mean"] == ["**53.5**", "52.0"]
    iqm = {arch: complete.aggregates[arch]["IQM"] for arch in ("mlp", "kan")}
    expected = [f"{i.point:.1f} [{i.low:.1f}, {i.high:.1f}]" for i in iqm.values()]
    assert [c.strip("*") for c in rows["IQM [95% CI]"]] == expected
    markdown = to_markdown(table)
    assert markdown.startswith("**Table 1: Normalized D4RL score.** Final evaluation (step 2,000)")
    assert "200 resamples, seed 0" in markdown and "Data: D4RL." in markdown
    assert "—" not in markdown and "†" not in markdown  # nothing missing, nothing partial


def test_table2_counts_and_reductions(complete: Analysis) -> None:
    rows = markdown_rows(parameter_table(complete))
    lines = [line for line in to_markdown(parameter_table(complete)).splitlines() if line.startswith("| ")]
    assert "| hopper | mlp | mlp[256] | 4,614 | baseline | mlp[256,256,256] | 135,681 | baseline |" in lines
    assert "|  | kan | kan[4] | 680 | 85.3% | mlp[256,256,256] | 135,681 | 0.0% |" in lines
    assert rows["halfcheetah"] == ["mlp", "mlp[256]", "7,692", "baseline", "mlp[256,256,256]", "137,985", "baseline"]
    assert "|  | kan | kan[4] | 1,160 | 84.9% | mlp[256,256,256] | 137,985 | 0.0% |" in lines
    notes = " ".join(parameter_table(complete).notes)
    assert "two trainable log-std scalars" in notes and "excluded" in notes


def test_table2_shows_more_parameters_as_a_negative_reduction(tmp_path: Path) -> None:
    big = make_record(HOPPER, "big", 0, 50.0)
    big["parameters"].update(actor_network=9_228, actor=9_230, critic=67_840, critics_total=135_680)
    write_records(tmp_path, [make_record(HOPPER, "mlp", 0, 50.0), big])
    lines = to_markdown(parameter_table(analysis_of(tmp_path))).splitlines()
    assert "|  | big | mlp[64] | 9,228 | −100.0% | mlp[64] | 67,840 | 50.0% |" in lines
    assert r"$-$100.0\%" in to_latex(parameter_table(analysis_of(tmp_path)))


def test_table2_names_every_environment_without_a_baseline_record(tmp_path: Path) -> None:
    records = [make_record(HALFCHEETAH, "kan", 0, 40.0), make_record(HOPPER, "mlp", 0, 50.0)]
    write_records(tmp_path, [*records, make_record(HOPPER, "kan", 0, 45.0)])
    notes = parameter_table(analysis_of(tmp_path)).notes
    assert notes[-1].endswith("reductions need a record of mlp there (halfcheetah).")


def test_table3_seconds_ratio_device_and_scaling(complete: Analysis) -> None:
    table = time_table(complete)
    rows = markdown_rows(table)
    assert rows["mlp"] == ["2.00 ± 0.00", "1.00×", "6", "6"]  # a seed trained alone is its own process
    assert rows["kan"] == ["6.00 ± 0.18", "3.00×", "6", "6"]
    assert "Device: Test CPU 9000 (CPU, 2 torch threads)." in table.caption
    assert "epochs of 100 steps; each run's median is scaled to 1,000 steps" in table.caption


def test_table3_groups_several_devices(tmp_path: Path) -> None:
    gpu = {"type": "cuda", "name": "Test GPU", "torch_threads": 2, "cpus": 2}
    write_records(
        tmp_path,
        [
            make_record(HOPPER, "mlp", 0, 50.0),
            make_record(HOPPER, "kan", 0, 50.0),
            make_record(HOPPER, "mlp", 1, 50.0, median_seconds=0.05, device=gpu),
            make_record(HOPPER, "kan", 1, 50.0, median_seconds=0.1, device=gpu),
        ],
    )
    table = time_table(analysis_of(tmp_path))
    assert table.header[0] == "Device" and "Records come from 2 devices" in table.caption
    lines = [line for line in to_markdown(table).splitlines() if line.startswith("| ")]
    assert "| Test CPU 9000 (CPU, 2 torch threads) | mlp | 2.00 | 1.00× | 1 | 1 |" in lines
    assert "|  | kan | 6.00 | 3.00× | 1 | 1 |" in lines
    assert "| Test GPU (CUDA) | mlp | 0.50 | 1.00× | 1 | 1 |" in lines
    assert "|  | kan | 1.00 | 2.00× | 1 | 1 |" in lines


def test_table3_averages_over_processes_not_the_seeds_they_trained_side_by_side(tmp_path: Path) -> None:
    """Seeds trained side by side share their process's timings: one measurement per process, however many seeds.
    mlp: groups of 3 at 0.6 and 1.2 s per 100 steps -> 2.0 and 4.0 s per seed and 1,000 steps, 3.00 ± 1.41 over
    the two processes (over the six runs it would be ± 1.10). kan: 6.0 on hopper with one seed failed, 10.0 on
    halfcheetah -> 8.00 ± 2.83 over processes, although the mean over its five timed runs is 8.4."""
    seconds = {("mlp", HOPPER): 0.6, ("mlp", HALFCHEETAH): 1.2, ("kan", HOPPER): 1.8, ("kan", HALFCHEETAH): 3.0}
    for (arch, dataset), median in seconds.items():
        group = [make_record(dataset, arch, seed, 50.0, median_seconds=median) for seed in (0, 1, 2)]
        if (arch, dataset) == ("kan", HOPPER):
            group[2] = make_record(dataset, arch, 2, None, status="failed", last_step=500, median_seconds=median)
        write_records(tmp_path, in_group(group))
    table = time_table(analysis_of(tmp_path))
    assert table.header == ["Architecture", "Seconds per epoch", "Ratio vs mlp", "Runs", "Processes"]
    rows = markdown_rows(table)
    assert rows["mlp"] == ["3.00 ± 1.41", "1.00×", "6", "2"]
    assert rows["kan"] == ["8.00 ± 2.83", "2.67×", "5", "2"]
    assert "then mean ± sample standard deviation over processes" in table.caption
    assert "Device: Test CPU 9000 (CPU, 2 torch threads, 3 seeds side by side)." in table.caption
    assert "Processes: the training processes that timed them" in table.notes[0]


def test_missing_cells_render_a_dash_and_a_footnote(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    walker = "d4rl:walker2d-medium-v2"
    write_grid_file(tmp_path, datasets=(*DATASETS, walker))
    failed = make_record(walker, "kan", 0, 70.0, status="failed", last_step=1000)
    write_records(tmp_path, [make_record(walker, "mlp", s, 70.0 + s) for s in (0, 1, 2)] + [failed])
    analysis = analysis_of(tmp_path)
    table = score_table(analysis)
    rows = markdown_rows(table)
    assert rows["walker2d-medium-v2"] == ["71.0 ± 1.0", "—"]  # nothing to compare: no bold
    assert rows["halfcheetah-medium-v2"] == ["**47.0 ± 0.2**", "45.0 ± 1.0"]
    notes = "\n".join(table.notes)
    assert "— no score: 1 of 6 cells (walker2d-medium-v2/kan)" in notes
    assert "15 of 18 runs have a score, 2 without a record, 1 failed (expected cells from grid.yaml)" in notes
    assert "Mean and IQM over the 2 of 3 datasets with all 3 seeds" in notes
    assert "left out: walker2d-medium-v2 (seeds with a score: kan 0/3)" in notes
    assert rows["Mean"] == ["**53.5**", "52.0"]  # over the two complete datasets only
    assert "—" in to_markdown(table) and "---" in to_latex(table)


def test_table6_gives_each_datasets_probability_of_improvement_and_the_pooled_one(complete: Analysis) -> None:
    """halfcheetah: every kan run scores below every mlp run, so P = 0 in every resample (bold: clear of 0.5).
    hopper: kan 58, 59, 60 against mlp 55, 60, 65 wins 3.5 of 9 pairs (a tie counts half): 0.39. Pooled:
    rliable averages the datasets' probabilities, (0 + 0.389) / 2 = 0.19, as in the figure."""
    table = improvement_table(complete)
    rows = markdown_rows(table)
    assert table.header == ["Dataset", "kan"] and table.stem == "table6_improvement"
    assert rows["halfcheetah-medium-v2"] == ["**0.00 [0.00, 0.00]**"]
    assert rows["hopper-medium-v2"][0].startswith("0.39 [")
    assert rows["Pooled over 2 datasets"][0].startswith("0.19 [")
    pooled = complete.improvement["kan"]
    assert rows["Pooled over 2 datasets"] == [f"{pooled.point:.2f} [{pooled.low:.2f}, {pooled.high:.2f}]"]
    assert "P(X > mlp)" in table.caption and f"{REPS} resamples" in table.caption


def test_table6_compares_a_dataset_as_soon_as_both_have_every_seed(tmp_path: Path) -> None:
    write_fixture(tmp_path, scores_without((HOPPER, "kan", 2)))
    rows = markdown_rows(improvement_table(analysis_of(tmp_path)))
    assert rows["hopper-medium-v2"] == ["—"]
    assert rows["halfcheetah-medium-v2"] == ["**0.00 [0.00, 0.00]**"]
    assert rows["Pooled over 1 dataset"] == ["**0.00 [0.00, 0.00]**"]


def test_runs_adopted_from_another_grid_are_named_in_tables_1_and_3(tmp_path: Path) -> None:
    paths = write_fixture(tmp_path / "ablations")
    for path in paths:
        record = json.loads(path.read_text())
        if record["cell"]["arch"] == "kan" and record["cell"]["dataset"] == HOPPER:
            record["adopted_from"] = f"../study/{path.relative_to(tmp_path / 'ablations')}"
            path.write_text(json.dumps(record))
    analysis = analysis_of(tmp_path / "ablations")
    expected = (
        "3 runs (hopper-medium-v2/kan) are the records of the same runs in study, adopted with `grid adopt` "
        "(same settings, seeds and data) rather than trained again; their times are that grid's."
    )
    assert expected in score_table(analysis).notes and expected in time_table(analysis).notes
    write_fixture(tmp_path / "plain")
    assert not any("adopted" in note for note in score_table(analysis_of(tmp_path / "plain")).notes)


def test_runs_extended_from_another_grids_final_states_are_named_in_tables_1_and_3(tmp_path: Path) -> None:
    paths = write_fixture(tmp_path / "long")
    for path in paths:
        record = json.loads(path.read_text())
        if record["cell"]["arch"] == "mlp":
            group = f"{path.parent.relative_to(tmp_path / 'long')}/seed0+seed1+seed2.final.pt"
            record["extended_from"] = {"state": f"../../../short/{group}", "steps": 50_000}
            path.write_text(json.dumps(record))
    analysis = analysis_of(tmp_path / "long")
    expected = (
        "6 runs (halfcheetah-medium-v2/mlp; hopper-medium-v2/mlp) started from the final states of the same runs in "
        "short at step 50,000 (`extends`) rather than from step 0, which on CPU gives the same records; the times of "
        "those first steps are that grid's."
    )
    assert expected in score_table(analysis).notes and expected in time_table(analysis).notes
    write_fixture(tmp_path / "plain")
    assert not any("extends" in note for note in score_table(analysis_of(tmp_path / "plain")).notes)


def test_partial_seeds_are_marked_with_n(tmp_path: Path) -> None:
    write_fixture(tmp_path, scores_without((HOPPER, "kan", 2)))
    table = score_table(analysis_of(tmp_path))
    rows = markdown_rows(table)
    assert rows["hopper-medium-v2"] == ["**60.0 ± 5.0**", "58.5 ± 0.7†"]
    notes = "\n".join(table.notes)
    assert "† fewer seeds than the grid's 3, mean over n: hopper-medium-v2/kan n=2." in notes
    assert "11 of 12 runs have a score, 1 without a record" in notes
    assert "Mean and IQM over the 1 of 2 datasets" in notes
    assert r"58.5 $\pm$ 0.7\textsuperscript{\dag}" in to_latex(table)


def test_diverged_runs_count_with_their_last_evaluation(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    diverged = make_record(HOPPER, "kan", 2, 30.0, status="diverged", last_step=1000)
    record_path(tmp_path, diverged).write_text(json.dumps(diverged))
    table = score_table(analysis_of(tmp_path))
    rows = markdown_rows(table)
    assert rows["hopper-medium-v2"][1] == "49.0 ± 16.5‡"  # (58 + 59 + 30) / 3
    notes = "\n".join(table.notes)
    assert "‡ includes diverged runs (non-finite losses), counted with their last evaluation score" in notes
    assert "hopper-medium-v2/kan (1 of 3)" in notes


def test_local_data_is_labelled_local_never_d4rl(tmp_path: Path) -> None:
    local = "local:/data/hopper-random.hdf5"
    write_records(tmp_path, [make_record(local, a, s, 5.0 + s) for a in ("mlp", "kan") for s in (0, 1)])
    table = score_table(analysis_of(tmp_path))
    assert table.title == "Normalized score"
    assert "Data: local data, not D4RL." in table.caption
    assert "Data: D4RL" not in table.caption
    assert "hopper-random (local)" in markdown_rows(table)


def test_d4rl_and_local_rows_together_keep_their_labels(tmp_path: Path) -> None:
    local = "local:hopper-medium"
    write_records(tmp_path, [make_record(d, "mlp", s, 50.0) for d in (HOPPER, local) for s in (0, 1)])
    table = score_table(analysis_of(tmp_path))
    assert table.title == "Normalized score"
    assert "Data: D4RL; local data, not D4RL (rows marked (local) or (Minari) are not D4RL)." in table.caption
    assert list(markdown_rows(table))[1:3] == ["hopper-medium-v2", "hopper-medium (local)"]


def test_the_caption_names_the_recipe_of_each_local_dataset_when_records_name_it(tmp_path: Path) -> None:
    """Local data is regenerated byte for byte only by its own recipe's kernels, so a table says which recipe
    made each dataset, and says so when records from before the field name none."""
    records = []
    for dataset, recipe in (("local:walker2d-medium", None), ("local:hopper-medium", 2)):
        for seed in (0, 1):
            record = make_record(dataset, "mlp", seed, 40.0 + seed)
            if recipe is not None:
                record["dataset"]["recipe"] = recipe
            records.append(record)
    write_records(tmp_path, records)
    analysis = analysis_of(tmp_path)
    recipes = (
        "Local data recipes: recipe 2 for hopper-medium (local); not named in the records of walker2d-medium (local)."
    )
    assert f"Data: local data, not D4RL. {recipes}" in score_table(analysis).caption  # in the table's row order
    captions = write_captions([], analysis, tmp_path / "figures")
    assert f"Data: local data, not D4RL. {recipes}" in captions.read_text()  # the figures say it too

    for record in records:
        record["dataset"]["recipe"] = 2
    shutil.rmtree(tmp_path)
    write_records(tmp_path, records)
    assert "Data: local data, not D4RL. Local data made by recipe 2. " in score_table(analysis_of(tmp_path)).caption

    # A record from before the field, with the digest of the records that name recipe 2, trained on its bytes.
    del records[1]["dataset"]["recipe"]
    shutil.rmtree(tmp_path)
    write_records(tmp_path, records)
    assert "Data: local data, not D4RL. Local data made by recipe 2. " in score_table(analysis_of(tmp_path)).caption
    # Without a digest nothing ties it to the others.
    del records[1]["dataset"]["sha256"]
    shutil.rmtree(tmp_path)
    write_records(tmp_path, records)
    recipes = "recipes: recipe 2 for hopper-medium (local); recipe 2 (some records name none) for walker2d-medium"
    assert recipes in score_table(analysis_of(tmp_path)).caption


# A LaTeX structure check that needs no TeX engine.
ENVIRONMENT = re.compile(r"\\(begin|end)\{([^}]*)\}")


def check_latex(text: str) -> None:
    assert text.isascii(), "the .tex files are plain ASCII (symbols as macros)"
    assert "\\usepackage{booktabs}" in text.splitlines()[1]  # the comment that says what is needed
    body = "\n".join(line for line in text.splitlines() if not line.startswith("%"))
    unescaped = re.sub(r"\\[{}&%$#_]", "", body)
    depth = 0
    for ch in unescaped:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0, "a closing brace without an opening one"
    assert depth == 0, "unbalanced braces"
    stack = []
    for kind, name in ENVIRONMENT.findall(body):
        if kind == "begin":
            stack.append(name)
        else:
            assert stack and stack.pop() == name, f"\\end{{{name}}} does not close the open environment"
    assert not stack
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert rule in body
    columns = len(re.search(r"\\begin\{tabular\}\{([lrc]+)\}", body).group(1))
    tabular = body.split("\\toprule", 1)[1].split("\\bottomrule", 1)[0]
    rows = [line for line in tabular.splitlines() if line.endswith("\\\\")]
    assert rows
    for row in rows:
        assert len(re.findall(r"(?<!\\)&", row)) == columns - 1, row
    assert re.search(r"(?<!\\)[%_&]", re.sub(r"\\[%_&]", "", tabular.replace("&", ""))) is None


def test_table7_shows_the_episodes_behind_each_score(tmp_path: Path) -> None:
    # The fixture's episodes: 10 of 1,000 steps returning 1,000 each. On hopper, which pays 1 per healthy step,
    # that is standing to the limit; on halfcheetah, which pays nothing for it, 1 per step of moving.
    records = fixture_records()
    for record in records:
        if record["cell"] == {"dataset": HOPPER, "arch": "kan", "seed": 2}:
            last = record["curve"][-1]
            last["episode_returns"], last["episode_lengths"] = [1500.0] * 5 + [130.0] * 5, [1000] * 5 + [100] * 5
    write_records(tmp_path, [r for r in records if r["cell"] != {"dataset": HALFCHEETAH, "arch": "mlp", "seed": 0}])
    table = episode_table(analysis_of(tmp_path))
    assert table.header == [
        "Dataset",
        "Architecture",
        "Score",
        "Episode length",
        "At the time limit",
        "Reward/step beyond healthy",
    ]
    rows = [[cell.text for cell in row] for row in table.rows]
    # Two of the three seeds: marked as in Table 1.
    assert rows[0] == ["halfcheetah-medium-v2", "mlp", "47.1 ± 0.1†", "1000 ± 0", "100%", "1.00 ± 0.00"]
    assert table.notes == [
        "† fewer runs with a scored evaluation's episodes than the grid's 3 seeds, mean over n: "
        "halfcheetah-medium-v2/mlp n=2."
    ]
    assert rows[1] == ["", "kan", "45.0 ± 1.0", "1000 ± 0", "100%", "1.00 ± 0.00"]
    assert rows[2] == ["hopper-medium-v2", "mlp", "60.0 ± 5.0", "1000 ± 0", "100%", "0.00 ± 0.00"]
    # kan seed 2: 550 steps per episode, half of them at the limit, (7,500 + 650 - 5,500) / 5,500 per step.
    per_step = (7_500 + 650 - 5_500) / 5_500
    assert rows[3][:5] == ["", "kan", "59.0 ± 1.0", f"850 ± {np.std([1000, 1000, 550], ddof=1):.0f}", "83%"]
    assert rows[3][5] == f"{per_step / 3:.2f} ± {np.std([0, 0, per_step], ddof=1):.2f}"
    assert table.midrules == {2}
    caption = to_markdown(table)
    assert "(time limit 1,000 steps)" in caption
    assert "scores 31.3 on hopper: a score near that" in caption  # 1,000 healthy steps, normalized
    assert "Halfcheetah pays no healthy reward." in caption and "Algorithm: CQL." in caption


def test_table7_marks_a_score_that_includes_diverged_runs(tmp_path: Path) -> None:
    records = [make_record(HOPPER, "mlp", seed, 50.0) for seed in (0, 1)]
    write_records(tmp_path, [*records, make_record(HOPPER, "mlp", 2, 20.0, status="diverged", last_step=1000)])
    table = episode_table(analysis_of(tmp_path))
    assert table.rows[0][2].text == "40.0 ± 17.3‡"
    assert table.notes == ["‡ includes diverged runs, read at their last evaluation: hopper-medium-v2/mlp (1 of 3)."]


def test_table7_dashes_a_cell_without_a_scored_run(tmp_path: Path) -> None:
    write_fixture(tmp_path, scores_without((HOPPER, "kan", 0), (HOPPER, "kan", 1), (HOPPER, "kan", 2)))
    write_grid_file(tmp_path, datasets=(HALFCHEETAH, HOPPER), archs=("mlp", "kan"))
    table = episode_table(analysis_of(tmp_path))
    assert [cell.text for cell in table.rows[3]] == ["", "kan", "—", "—", "—", "—"]
    assert table.notes == ["— no run with a score (1 row(s))."]


def swinging_record(seed: int, scores: list[float], episode_std: float = 1.0) -> dict:
    """A hopper mlp run evaluated every 1,000 steps with these scores, the last one scoring it."""
    record = make_record(HOPPER, "mlp", seed, scores[-1])
    last = record["curve"][-1]
    record["curve"] = [
        {**last, "step": 1000 * (i + 1), "normalized_score": score, "normalized_score_std": episode_std}
        for i, score in enumerate(scores)
    ]
    return record


def test_table8_splits_the_spread_between_seeds_runs_and_evaluations(tmp_path: Path) -> None:
    # Six evaluations a run; Table 8 reads the last five (steps 2,000-6,000). Seeds 0 and 1 swing between 40 and
    # 60 and stop on a high and a low; seed 2 is steady at 50.
    write_records(
        tmp_path,
        [
            swinging_record(0, [0, 40, 60, 40, 60, 60], episode_std=2.0),
            swinging_record(1, [0, 60, 40, 60, 40, 40], episode_std=2.0),
            swinging_record(2, [0, 50, 50, 50, 50, 50], episode_std=5.0),
        ],
    )
    write_grid_file(tmp_path, datasets=(HOPPER,), archs=("mlp",))
    table = spread_table(analysis_of(tmp_path))
    assert table.header[2:] == [
        "Score",
        "Last 5 evaluations",
        "σ between seeds",
        "σ within a run",
        "σ of one evaluation",
    ]
    late = [np.mean([40, 60, 40, 60, 60]), np.mean([60, 40, 60, 40, 40]), 50.0]
    within = np.sqrt(np.mean([np.var([40, 60, 40, 60, 60], ddof=1)] * 2 + [0.0]))
    evaluation = np.sqrt(np.mean([(2.0 / np.sqrt(10)) ** 2] * 2 + [(5.0 / np.sqrt(10)) ** 2]))
    assert [cell.text for cell in table.rows[0]] == [
        "hopper-medium-v2",
        "mlp",
        "50.0 ± 10.0",
        f"{np.mean(late):.1f} ± {np.std(late, ddof=1):.1f}",
        "10.0",
        f"{within:.1f}",
        f"{evaluation:.1f}",
    ]
    assert "each run's mean over its last 5 evaluations, steps 2,000-6,000," in table.caption
    assert not table.notes


def test_table8_dashes_missing_cells_and_marks_partial_and_diverged_ones(tmp_path: Path) -> None:
    write_fixture(tmp_path, scores_without((HOPPER, "kan", 0), (HOPPER, "kan", 1), (HOPPER, "kan", 2)))
    write_grid_file(tmp_path, datasets=(HALFCHEETAH, HOPPER), archs=("mlp", "kan"))
    write_records(tmp_path, [make_record(HOPPER, "mlp", 2, 20.0, status="diverged", last_step=1000)])
    (tmp_path / "d4rl-halfcheetah-medium-v2" / "mlp" / "seed0.json").unlink()
    table = spread_table(analysis_of(tmp_path))
    rows = [[cell.text for cell in row] for row in table.rows]
    assert rows[3] == ["", "kan", *["—"] * 5]
    # Two evaluations a run (1,000 and 2,000, 10 points apart); the diverged run has one, so no swing of its own.
    assert rows[0][2].endswith("†") and rows[0][5] == f"{np.std([0, 10], ddof=1):.1f}"
    assert rows[2][2].endswith("‡") and rows[2][5] == f"{np.std([0, 10], ddof=1):.1f}"
    assert "evaluations, steps" not in table.caption  # the runs' windows differ: no one span of steps
    assert table.notes == [
        "— no run with a score (1 row(s)).",
        "† fewer scored runs than the grid's 3 seeds: halfcheetah-medium-v2/mlp n=2.",
        "‡ includes diverged runs, read at their last evaluations: hopper-medium-v2/mlp (1 of 3).",
    ]


def test_latex_is_well_formed(complete: Analysis, tmp_path: Path) -> None:
    write_fixture(tmp_path, scores_without((HOPPER, "kan", 2), (HALFCHEETAH, "mlp", 0), (HOPPER, "mlp", 1)))
    ragged = analysis_of(tmp_path)
    for analysis in (complete, ragged):
        for make in (score_table, parameter_table, time_table, episode_table, spread_table):
            check_latex(to_latex(make(analysis)))


def test_latex_escapes_specials() -> None:
    assert latex_text("a_b 95% #1 & {x} ~ ^ $ \\") == (
        r"a\_b 95\% \#1 \& \{x\} \textasciitilde{} \textasciicircum{} \$ \textbackslash{}"
    )
    assert latex_text("1.0 ± 0.2† — 3.00× −5%") == r"1.0 $\pm$ 0.2\textsuperscript{\dag} --- 3.00$\times$ $-$5\%"


ENGINES = [e for e in ("pdflatex", "lualatex", "xelatex", "tectonic") if shutil.which(e)]


@pytest.mark.skipif(not ENGINES, reason="no TeX engine installed (pdflatex, lualatex, xelatex or tectonic)")
def test_latex_compiles(complete: Analysis, tmp_path: Path) -> None:
    names = []
    for make in (score_table, parameter_table, time_table, episode_table, spread_table):
        table = make(complete)
        (tmp_path / f"{table.stem}.tex").write_text(to_latex(table))
        names.append(table.stem)
    inputs = "\n".join(f"\\input{{{name}}}" for name in names)
    document = (
        f"\\documentclass{{article}}\n\\usepackage{{booktabs}}\n\\begin{{document}}\n{inputs}\n\\end{{document}}\n"
    )
    (tmp_path / "doc.tex").write_text(document)
    engine = ENGINES[0]
    command = [engine, "doc.tex"] if engine == "tectonic" else [engine, "-interaction=nonstopmode", "-halt-on-error"]
    if engine != "tectonic":
        command.append("doc.tex")
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0


def test_runs_still_improving_at_their_last_evaluation_are_marked(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    # Four evaluations rising 10 points each, far above their standard error of 1 / sqrt(10): still improving.
    rising = [make_record(HOPPER, "kan", s, 57.0 + s) for s in (0, 1)]
    for record in rising:
        last = record["curve"][-1]
        record["curve"] = [
            {**last, "step": 500 * (i + 1), "normalized_score": last["normalized_score"] - 10.0 * (3 - i)}
            for i in range(4)
        ]
    write_records(tmp_path, rising)
    table = score_table(analysis_of(tmp_path))
    rows = markdown_rows(table)
    assert rows["hopper-medium-v2"][1].endswith("↑")
    assert not rows["hopper-medium-v2"][0].endswith("↑") and not rows["halfcheetah-medium-v2"][1].endswith("↑")
    notes = "\n".join(table.notes)
    assert "↑ still improving at the last evaluation" in notes and "hopper-medium-v2/kan (2 of 3)" in notes
    check_latex(to_latex(table))  # the mark and its note as a macro, not a character pdflatex cannot set
    assert to_latex(table).count(r"$\uparrow$") == 2


def with_overrides(record: dict, settings: dict, architecture_overrides: dict) -> dict:
    """`record` of the algorithm with `settings` as a grid with these architecture_overrides writes it."""
    algo = record["config"]["algo"]
    own = {k.removeprefix(f"{algo}."): v for k, v in architecture_overrides.get(record["cell"]["arch"], {}).items()}
    own = {k: v for k, v in own.items() if k in settings}  # another algorithm's settings do not apply
    record["grid_overrides"] = {
        "applied": {f"{algo}.{k}": v for k, v in own.items()},
        "replaced": {f"{algo}.{k}": settings[k] for k in own},
        "dataset_overrides": {},
        "architecture_overrides": architecture_overrides,
    }
    record["config"][algo].update(own)
    return record


def test_override_notes_of_several_algorithms_name_the_labelled_columns(tmp_path: Path) -> None:
    """With several algorithms the columns are labelled ("TD3+BC kan") while the grid's overrides name the
    architecture: each labelled column gets its architecture's settings, of its own algorithm only."""
    overrides = {"kan": {"actor_lr": 1e-3, "td3bc.alpha": 5.0}}
    settings = {"bc": {"actor_lr": 3e-4}, "td3bc": {"actor_lr": 3e-4, "alpha": 2.5}}
    for algo, own in settings.items():
        records = [with_overrides(as_algorithm(r, algo, own), own, overrides) for r in fixture_records()]
        write_records(tmp_path / algo, records)
    analysis = analysis_of(tmp_path)
    assert set(analysis.records.architectures) == {"BC kan", "BC mlp", "TD3+BC kan", "TD3+BC mlp"}
    notes = score_table(analysis).notes
    assert (
        "Settings per column (the grid's architecture_overrides): BC kan: actor_lr 0.001; TD3+BC kan: actor_lr "
        "0.001, td3bc.alpha 5; the other columns at the grid's actor_lr 0.0003, td3bc.alpha 2.5."
    ) in notes


def test_override_notes_say_nothing_of_the_other_columns_when_they_are_another_algorithms() -> None:
    """A report of one grid's CQL columns beside another grid's BC columns (`bench report A --with B`): the CQL
    column's cql_alpha is named, and no grid-wide value is claimed for the BC columns, which have other settings."""
    config = {
        "grid_overrides.architecture_overrides.mlp-a50.cql_alpha": 50.0,
        "grid_overrides.architecture_overrides.mlp-a50.policy_lr": 1e-4,
        "cql.cql_alpha": 10.0,
        "cql.policy_lr": 3e-5,
    }
    columns = {"CQL mlp-a50": ("mlp-a50", "cql"), "BC mlp": ("mlp", "bc")}
    expected = "Settings per column (the grid's architecture_overrides): CQL mlp-a50: cql_alpha 50, policy_lr 0.0001"
    assert override_notes(config, list(columns), [], {}, ["cql", "bc"], columns) == [f"{expected}."]
    columns["CQL mlp"] = ("mlp", "cql")
    assert override_notes(config, list(columns), [], {}, ["cql", "bc"], columns) == [f"{expected}."]
    del columns["BC mlp"]
    assert override_notes(config, list(columns), [], {}, ["cql"], columns) == [
        f"{expected}; the other columns at the grid's cql_alpha 10, policy_lr 3e-05."
    ]
    two_grids = expected.replace("the grid's", "the grids'")
    assert override_notes(config, list(columns), [], {}, ["cql"], columns, grids=2) == [
        f"{two_grids}; the other columns at the grids' cql_alpha 10, policy_lr 3e-05."
    ]


def test_override_notes_name_an_algorithms_settings_only_where_its_records_are() -> None:
    row = "grid_overrides.dataset_overrides.local:hopper-medium"
    config = {f"{row}.iql.tau": 0.001, f"{row}.normalize_reward": True, "iql.tau": 0.005, "normalize_reward": False}
    datasets = ["local:hopper-medium", "local:walker2d-medium"]
    both = override_notes(config, [], datasets, {}, ["td3bc", "iql"])
    assert both == [
        "Settings per row (the grid's dataset_overrides): local:hopper-medium: iql.tau 0.001, normalize_reward True; "
        "the other rows at the grid's iql.tau 0.005, normalize_reward False."
    ]
    assert override_notes(config, [], datasets, {}, ["bc"]) == [
        "Settings per row (the grid's dataset_overrides): local:hopper-medium: normalize_reward True; "
        "the other rows at the grid's normalize_reward False."
    ]
    assert override_notes(config, [], datasets, {}) == both
