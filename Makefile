# Every target installs what it needs: `setup` builds .venv once and refreshes it when
# requirements.txt or pyproject.toml change (the stamp file records the last install).
# TORCH_INDEX=URL adds a package index that pip also searches for the pins: on Linux x86_64 PyPI's torch wheel is
# the CUDA build (with gigabytes of CUDA wheels, GPU or not); TORCH_INDEX=https://download.pytorch.org/whl/cpu
# installs the CPU-only build of the same version instead. It applies when .venv is built (`make clean-venv` first).
PYTHON ?= python3
TORCH_INDEX ?=
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lint format clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt$(if $(TORCH_INDEX), --extra-index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# ruff formats the README's Python examples too, so they stay valid, formatted code.
lint: setup
	$(PY) -m ruff check bench tests benchmarks
	$(PY) -m ruff format --check bench tests benchmarks README.md

format: setup
	$(PY) -m ruff format bench tests benchmarks README.md
	$(PY) -m ruff check --fix bench tests benchmarks

test: lint
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)

# The peer libraries `python -m bench speed cql` runs against (benchmarks/peers/requirements.txt), in their own
# venv because d3rlpy pins its own gymnasium; refreshed when that file changes.
PEERS_VENV := .cache/peers-venv
PEERS_STAMP := $(PEERS_VENV)/.installed
.PHONY: bench-peers

bench-peers: $(PEERS_STAMP)

$(PEERS_STAMP): benchmarks/peers/requirements.txt
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install --quiet -r benchmarks/peers/requirements.txt \
		$(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	touch $(PEERS_STAMP)

# A GPU box's checks (benchmarks/gpu_check.py): the CUDA tests, `bench speed cql` on CUDA, and the paper grid's
# `grid estimate` timed there, eager and five seeds side by side compiled; each part's output in .cache/gpu-check/.
.PHONY: gpu-check
gpu-check: setup
	$(PY) -m benchmarks.gpu_check

# Grids (configs/*.yaml) through `python -m bench grid run`; records go to $(RESULTS)/<grid name>/.
# LAUNCHER=local|ray; WORKERS=N cells at once (default: 1 local, as many as the resources fit on Ray);
# RAY_ADDRESS=host:port joins an existing Ray cluster; FORCE=1 retrains finished cells.
# E.g. `make reproduce LAUNCHER=ray`.
.PHONY: smoke demo reproduce reproduce-local local-data study-lr study study-ablations study-horizon study-horizon-medium-expert study-width study-quality study-algorithms-lr
.PHONY: study-algorithms study-algorithms-medium-expert study-td3bc-alpha study-cql-alpha study-cql-alpha50-actors study-kan-width
LAUNCHER ?= local
WORKERS ?=
RAY_ADDRESS ?=
FORCE ?=
RESULTS ?= results
# Local datasets (local:<name>) go to LOCAL_DATA, never committed (*.hdf5 is ignored): $BENCH_LOCAL_DATASET_DIR
# when set, else .cache/local-data, the folder `python -m bench` reads by default, so its commands find the data
# these targets made. The smoke grid's data is a random-policy rollout of the real Hopper-v4 env (local, not D4RL),
# generated when missing.
LOCAL_DATA ?= $(or $(BENCH_LOCAL_DATASET_DIR),.cache/local-data)
SMOKE_DATA ?= $(LOCAL_DATA)
GRID_RUN = $(PY) -m bench grid run --launcher $(LAUNCHER) --results $(RESULTS) \
	$(if $(WORKERS),--workers $(WORKERS)) $(if $(RAY_ADDRESS),--ray-address $(RAY_ADDRESS)) $(if $(FORCE),--force)

$(SMOKE_DATA)/hopper-random.hdf5: | $(STAMP)
	$(PY) -m bench datasets generate --env hopper --policy random --steps 5000 --local-dir $(SMOKE_DATA) --no-progress

# The whole pipeline on generated data: data -> CQL cells -> records -> tables and figures.
smoke: setup $(SMOKE_DATA)/hopper-random.hdf5
	$(GRID_RUN) configs/smoke.yaml --local-dir $(SMOKE_DATA)
	$(PY) -m bench report $(RESULTS)/smoke --tables tables/smoke --figures figures/smoke

# The nine local D4RL-recipe datasets, regenerated into LOCAL_DATA from the committed behaviour policies
# (behaviour_policies/) when missing or when the policies or the recipe code change; local data, not D4RL. Each
# env's medium-expert file is written last, so its presence means the env's three files are complete. Recipe 2
# (the policies act in float64) gives the same files on any x86 CPU. LOCAL_DATA_RECIPE1 holds recipe 1 data (float32
# actions), which the grids with records trained on it need (cpu-study, cpu-study-lr): it regenerates
# byte-identically only on a CPU with the same float32 matmul kernels as the one that made those records (`bench
# grid run` says so when the data differ).
LOCAL_ENVS := halfcheetah hopper walker2d
# The code that computes the datasets: the recipe and the behaviour policy that acts in it.
RECIPE_CODE := bench/suite/recipe.py bench/agents/sac.py
LOCAL_DATA_RECIPE1 ?= $(LOCAL_DATA)-recipe1
LOCAL_FILES := $(foreach env,$(LOCAL_ENVS),$(LOCAL_DATA)/$(env)-medium-expert.hdf5)
LOCAL_FILES_RECIPE1 := $(foreach env,$(LOCAL_ENVS),$(LOCAL_DATA_RECIPE1)/$(env)-medium-expert.hdf5)
.PHONY: local-data-recipe1

$(LOCAL_DATA)/%-medium-expert.hdf5: behaviour_policies/%/policies.json $(RECIPE_CODE) | $(STAMP)
	$(PY) -m bench datasets generate --env $* --from-policies --local-dir $(LOCAL_DATA) --overwrite --no-progress

$(LOCAL_DATA_RECIPE1)/%-medium-expert.hdf5: behaviour_policies/%/policies.json $(RECIPE_CODE) | $(STAMP)
	$(PY) -m bench datasets generate --env $* --from-policies --recipe 1 --local-dir $(LOCAL_DATA_RECIPE1) \
		--overwrite --no-progress

# The three envs regenerate in parallel (one torch thread each; about 4 minutes of CPU per env).
local-data: setup
	$(MAKE) --no-print-directory -j 3 $(LOCAL_FILES)

local-data-recipe1: setup
	$(MAKE) --no-print-directory -j 3 $(LOCAL_FILES_RECIPE1)

# The CPU study's data (configs/cpu-study.yaml): walker2d and hopper from recipe 1, as their records trained on
# (files made on an AMD EPYC CPU), halfcheetah from recipe 2, which any x86 CPU regenerates, since its recipe 1
# file could not be remade on the CPUs that followed (README, "Local D4RL-recipe datasets"). Links into the two
# folders, so each file is made once and `bench grid run` checks every digest as usual.
LOCAL_DATA_STUDY ?= $(LOCAL_DATA)-study
.PHONY: local-data-study
local-data-study: local-data local-data-recipe1
	mkdir -p $(LOCAL_DATA_STUDY)
	ln -sfn $(abspath $(LOCAL_DATA_RECIPE1))/walker2d-medium.hdf5 $(LOCAL_DATA_STUDY)/walker2d-medium.hdf5
	ln -sfn $(abspath $(LOCAL_DATA_RECIPE1))/hopper-medium.hdf5 $(LOCAL_DATA_STUDY)/hopper-medium.hdf5
	ln -sfn $(abspath $(LOCAL_DATA))/halfcheetah-medium.hdf5 $(LOCAL_DATA_STUDY)/halfcheetah-medium.hdf5

# The three SAC behaviour-policy runs (1,000,000 steps each, one core each, niced), trained or resumed from their
# checkpoints in $(SAC_RUNS)/<env>; each then exports its policies into behaviour_policies/<env>/ and regenerates
# its datasets. Hours of work: run it in the background and again after an interruption, e.g.
# `nohup make behaviour-policies > .cache/behaviour-policies.log 2>&1 &`; each run logs one line per snapshot.
# `kill -TERM` on a run's python process stops it at its next episode end with a checkpoint (nothing lost).
# The runs live outside the checkout (a user cache, as torch's and pip's), so a fresh clone on the same machine
# resumes them rather than starting over. SAC_ENVS picks a subset: `make behaviour-policies SAC_ENVS=hopper`.
# SAC_STEPS changes the budget (a multiple of 5,000), also of a stopped run: it resumes and ends there, the
# same policies a longer run passes through; the change is recorded in policies.json.
SAC_RUNS ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kan-offline-rl/sac-1m
SAC_ENVS ?= $(LOCAL_ENVS)
SAC_STEPS ?=
.PHONY: behaviour-policies
behaviour-policies: setup
	$(MAKE) --no-print-directory -j 3 $(foreach env,$(SAC_ENVS),$(SAC_RUNS)/$(env)/exported)

$(SAC_RUNS)/%/exported: | $(STAMP)
	nice -n 15 $(PY) -m bench datasets generate --env $* --threads 1 --work-dir $(SAC_RUNS)/$* \
		--local-dir $(LOCAL_DATA) --overwrite --no-progress $(if $(SAC_STEPS),--sac-steps $(SAC_STEPS))
	touch $@

# MLP vs KAN actor on the local medium datasets, small enough for a 2-core CPU: regenerate the data, run
# configs/demo.yaml (two cells at a time), then the tables and figures, Table 4 (deployment), Table 9 (where the
# actors' episodes go) and a look inside one KAN actor (bench explain).
demo: WORKERS := $(or $(WORKERS),2)
demo: local-data
	$(GRID_RUN) configs/demo.yaml --local-dir $(LOCAL_DATA)
	$(PY) -m bench report $(RESULTS)/demo --tables tables/demo --figures figures/demo
	$(PY) -m bench deploy $(RESULTS)/demo --tables tables/demo --calls 300 --local-dir $(LOCAL_DATA)
	$(PY) -m bench coverage $(RESULTS)/demo --tables tables/demo --local-dir $(LOCAL_DATA)
	$(PY) -m bench explain $(RESULTS)/demo/local-hopper-medium/kan-small/seed0.json \
		--compare $(RESULTS)/demo/local-hopper-medium/mlp-small/seed0.json --out figures/demo/explain --local-dir $(LOCAL_DATA)

# The CPU study's policy learning rate sweep (configs/cpu-study-lr.yaml) on the local walker2d-medium data,
# two processes of three seeds side by side at a time, then its report. Records go to results/cpu-study-lr/.
study-lr: WORKERS := $(or $(WORKERS),2)
study-lr: local-data-recipe1
	$(GRID_RUN) configs/cpu-study-lr.yaml --local-dir $(LOCAL_DATA_RECIPE1) --no-progress
	$(PY) -m bench report $(RESULTS)/cpu-study-lr --tables tables/cpu-study-lr --figures figures/cpu-study-lr

# The CPU study (configs/cpu-study.yaml): MLP vs KAN vs parameter-matched MLP actors in CQL with 2 x 64 critics on
# the recipe 1 local medium datasets, two processes of five seeds side by side at a time; then its report and
# Table 5 of its actors. Run it again to resume; `make tables GRID=cpu-study` rebuilds the tables from the records
# without training.
study: WORKERS := $(or $(WORKERS),2)
study: local-data-study
	$(GRID_RUN) configs/cpu-study.yaml --local-dir $(LOCAL_DATA_STUDY) --no-progress
	$(PY) -m bench report $(RESULTS)/cpu-study
	$(PY) -m bench report $(RESULTS)/cpu-study --last-evaluations 5 --only tables
	$(PY) -m bench actions $(RESULTS)/cpu-study --local-dir $(LOCAL_DATA_STUDY)

# The CPU study's ablations of kan4 (configs/cpu-study-ablations.yaml) on the recipe 2 local medium datasets, so
# any x86 CPU runs and resumes them: two processes of five seeds side by side at a time, the KAN critics (the
# costliest cells) last; then their report against kan4, Table 5 of their actors and Table 4 (deployment: does
# the RBF layer run faster than the B-spline one, as it trains faster?), timed once no worker runs. Cells that
# the study already ran with the same settings on the same data (halfcheetah's mlp38) are adopted from its records
# rather than trained again. Run it again to resume.
ABLATIONS_FIRST := kan4,kan4-spline,kan4-g3,kan4-g10,kan4-range1,rbf4,mlp38
study-ablations: WORKERS := $(or $(WORKERS),2)
study-ablations: local-data
	$(PY) -m bench grid adopt configs/cpu-study-ablations.yaml --from $(RESULTS)/cpu-study --results $(RESULTS) \
		--local-dir $(LOCAL_DATA)
	$(GRID_RUN) configs/cpu-study-ablations.yaml --local-dir $(LOCAL_DATA) --no-progress --first $(ABLATIONS_FIRST)
	$(PY) -m bench report $(RESULTS)/cpu-study-ablations
	$(PY) -m bench report $(RESULTS)/cpu-study-ablations --last-evaluations 5 --only tables
	$(PY) -m bench actions $(RESULTS)/cpu-study-ablations --local-dir $(LOCAL_DATA)
	$(PY) -m bench deploy $(RESULTS)/cpu-study-ablations --local-dir $(LOCAL_DATA)

# Width against layer (configs/cpu-study-width.yaml): an MLP actor of kan4's width and a KAN actor of mlp38's width
# beside the ablation grid's kan4 and mlp38, whose records are adopted rather than trained again. Two workers; run
# it again to resume. Then its report and Table 5 of its actors.
study-width: WORKERS := $(or $(WORKERS),2)
study-width: local-data
	$(PY) -m bench grid adopt configs/cpu-study-width.yaml --from $(RESULTS)/cpu-study-ablations --results $(RESULTS) \
		--local-dir $(LOCAL_DATA)
	$(GRID_RUN) configs/cpu-study-width.yaml --local-dir $(LOCAL_DATA) --no-progress
	$(PY) -m bench report $(RESULTS)/cpu-study-width
	$(PY) -m bench report $(RESULTS)/cpu-study-width --last-evaluations 5 --only tables
	$(PY) -m bench actions $(RESULTS)/cpu-study-width --local-dir $(LOCAL_DATA)

# The CPU study on the other data qualities (configs/cpu-study-quality.yaml): mlp256, kan4, mlp38 and kan38 on the
# nine recipe 2 local datasets, the medium cells adopted from the width grid and the study where they trained on
# the same data, two groups of five seeds side by side at once (about 10 hours here); run it again to resume. Then
# its reports (and their tables scored by the mean of the last 5 evaluations), Tables 5 and 9 of its actors.
study-quality: WORKERS := $(or $(WORKERS),2)
study-quality: local-data
	$(PY) -m bench grid adopt configs/cpu-study-quality.yaml --from $(RESULTS)/cpu-study-width --results $(RESULTS) \
		--local-dir $(LOCAL_DATA)
	$(PY) -m bench grid adopt configs/cpu-study-quality.yaml --from $(RESULTS)/cpu-study --results $(RESULTS) \
		--local-dir $(LOCAL_DATA)
	$(GRID_RUN) configs/cpu-study-quality.yaml --local-dir $(LOCAL_DATA) --no-progress
	$(PY) -m bench report $(RESULTS)/cpu-study-quality
	$(PY) -m bench report $(RESULTS)/cpu-study-quality --last-evaluations 5 --only tables
	$(PY) -m bench actions $(RESULTS)/cpu-study-quality --local-dir $(LOCAL_DATA)
	$(PY) -m bench coverage $(RESULTS)/cpu-study-quality --local-dir $(LOCAL_DATA)

# The CPU study at twice its budget (configs/cpu-study-horizon.yaml): the ablations' kan4 and mlp38 for 100,000
# steps on the recipe 2 walker2d-, hopper- and halfcheetah-medium, two groups of five seeds side by side at once;
# then its report and Table 5 (`make tables GRID=cpu-study-horizon AT_STEP=50000`: the same runs at 50,000 steps).
study-horizon: WORKERS := $(or $(WORKERS),2)
study-horizon: local-data
	$(GRID_RUN) configs/cpu-study-horizon.yaml --local-dir $(LOCAL_DATA) --no-progress
	$(PY) -m bench report $(RESULTS)/cpu-study-horizon
	$(PY) -m bench actions $(RESULTS)/cpu-study-horizon --local-dir $(LOCAL_DATA)

# The quality grid's medium-expert cells at twice its budget (configs/cpu-study-horizon-medium-expert.yaml): mlp256
# and kan38 for 100,000 steps on the recipe 2 hopper-, walker2d- and halfcheetah-medium-expert, two groups of five
# seeds side by side at once (about 6 hours here); run it again to resume. Then its reports (final and last 5
# evaluations; `make tables GRID=cpu-study-horizon-medium-expert AT_STEP=50000`: the same runs at 50,000 steps),
# Table 5 and Table 9 (where the actors' episodes go).
study-horizon-medium-expert: WORKERS := $(or $(WORKERS),2)
study-horizon-medium-expert: local-data
	$(GRID_RUN) configs/cpu-study-horizon-medium-expert.yaml --local-dir $(LOCAL_DATA) --no-progress
	$(PY) -m bench report $(RESULTS)/cpu-study-horizon-medium-expert
	$(PY) -m bench report $(RESULTS)/cpu-study-horizon-medium-expert --last-evaluations 5 --only tables
	$(PY) -m bench actions $(RESULTS)/cpu-study-horizon-medium-expert --local-dir $(LOCAL_DATA)
	$(PY) -m bench coverage $(RESULTS)/cpu-study-horizon-medium-expert --local-dir $(LOCAL_DATA)

# The actor learning rate check of the algorithms grid (configs/algorithms-lr.yaml): its two small actors at
# CORL's 3e-4 and at 1e-3 under BC, TD3+BC and IQL on local walker2d-medium, before the grid itself runs; then its
# report. Records go to results/algorithms-lr/<algorithm>/.
study-algorithms-lr: WORKERS := $(or $(WORKERS),2)
study-algorithms-lr: local-data
	$(GRID_RUN) configs/algorithms-lr.yaml --local-dir $(LOCAL_DATA) --no-progress
	$(PY) -m bench report $(RESULTS)/algorithms-lr --tables tables/algorithms-lr --figures figures/algorithms-lr

# The paper's actors under BC, TD3+BC and IQL (configs/algorithms.yaml) on the three local medium datasets, two
# processes of five seeds side by side at a time (about 4 hours here), then its report and Table 5 (each
# actor's actions against the data, rows per algorithm); records go to results/algorithms/<algorithm>/.
study-algorithms: WORKERS := $(or $(WORKERS),2)
study-algorithms: local-data
	$(GRID_RUN) configs/algorithms.yaml --local-dir $(LOCAL_DATA) --no-progress
	$(PY) -m bench report $(RESULTS)/algorithms --tables tables/algorithms --figures figures/algorithms
	$(PY) -m bench actions $(RESULTS)/algorithms --tables tables/algorithms --local-dir $(LOCAL_DATA)

# configs/algorithms.yaml's cells on the three local medium-expert datasets (configs/algorithms-medium-expert.yaml):
# is halfcheetah-medium-expert's failure under CQL the data's or CQL's? About 4 hours with two workers; run it again
# to resume. Then its report, Table 5 and Table 9 (where the actors' episodes go).
study-algorithms-medium-expert: WORKERS := $(or $(WORKERS),2)
study-algorithms-medium-expert: local-data
	$(GRID_RUN) configs/algorithms-medium-expert.yaml --local-dir $(LOCAL_DATA) --no-progress
	$(PY) -m bench report $(RESULTS)/algorithms-medium-expert
	$(PY) -m bench report $(RESULTS)/algorithms-medium-expert --last-evaluations 5 --only tables
	$(PY) -m bench actions $(RESULTS)/algorithms-medium-expert --local-dir $(LOCAL_DATA)
	$(PY) -m bench coverage $(RESULTS)/algorithms-medium-expert --local-dir $(LOCAL_DATA)

# TD3+BC's mlp[256] on local halfcheetah-medium-expert at alpha 1.0 and 0.25 beside CORL's 2.5
# (configs/td3bc-alpha-medium-expert.yaml), the 2.5 cells adopted from the algorithms grid on medium-expert data:
# does the Q term's weight take the actors out of the data? One worker, two groups of about 20 minutes; run it
# again to resume. Then its report and Tables 5 and 9.
study-td3bc-alpha: WORKERS := $(or $(WORKERS),1)
study-td3bc-alpha: local-data
	$(PY) -m bench grid adopt configs/td3bc-alpha-medium-expert.yaml --from $(RESULTS)/algorithms-medium-expert \
		--results $(RESULTS) --local-dir $(LOCAL_DATA)
	$(GRID_RUN) configs/td3bc-alpha-medium-expert.yaml --local-dir $(LOCAL_DATA) --no-progress
	$(PY) -m bench report $(RESULTS)/td3bc-alpha-medium-expert
	$(PY) -m bench actions $(RESULTS)/td3bc-alpha-medium-expert --local-dir $(LOCAL_DATA)
	$(PY) -m bench coverage $(RESULTS)/td3bc-alpha-medium-expert --local-dir $(LOCAL_DATA)

# CQL's mlp256 on local halfcheetah-medium-expert at cql_alpha 1, 10 (CORL's, the quality grid's cell trained again
# to keep its critics) and 50 (configs/cql-alpha-medium-expert.yaml): does CQL's conservative weight keep its
# actors in the data, and what do its critics expect where they go? Two workers, three groups of about an hour, the
# new weights first (a stop then leaves them done and the repeat of alpha 10 to come); run it again to resume. Then
# its report and Tables 5, 9 and 10, and whether its cells at 10 repeat the quality grid's (`bench compare`: on
# another machine they part, and it says from which evaluation; make goes on).
study-cql-alpha: WORKERS := $(or $(WORKERS),2)
study-cql-alpha: local-data
	$(GRID_RUN) configs/cql-alpha-medium-expert.yaml --local-dir $(LOCAL_DATA) --no-progress \
		--first mlp256-cqlalpha1,mlp256-cqlalpha50
	$(PY) -m bench report $(RESULTS)/cql-alpha-medium-expert
	$(PY) -m bench actions $(RESULTS)/cql-alpha-medium-expert --local-dir $(LOCAL_DATA)
	$(PY) -m bench coverage $(RESULTS)/cql-alpha-medium-expert --local-dir $(LOCAL_DATA)
	$(PY) -m bench critics $(RESULTS)/cql-alpha-medium-expert --local-dir $(LOCAL_DATA)
	-$(PY) -m bench compare $(RESULTS)/cpu-study-quality/local-halfcheetah-medium-expert/mlp256 \
		$(RESULTS)/cql-alpha-medium-expert/local-halfcheetah-medium-expert/mlp256

# The quality grid's kan4, mlp38 and kan38 on local halfcheetah-medium-expert at cql_alpha 50, where the CQL alpha
# grid's mlp256 learns that data (configs/cql-alpha50-actors-medium-expert.yaml): once CQL learns it, do the KAN
# actors match the MLPs? Three workers, three groups of about an hour of one core each; run it again to resume.
# Then its reports (kan4 and kan38 against mlp38; the four actors against the CQL alpha grid's mlp256 at 50) and
# Tables 5, 9 and 10.
study-cql-alpha50-actors: WORKERS := $(or $(WORKERS),3)
study-cql-alpha50-actors: local-data
	$(GRID_RUN) configs/cql-alpha50-actors-medium-expert.yaml --local-dir $(LOCAL_DATA) --no-progress
	$(PY) -m bench report $(RESULTS)/cql-alpha50-actors-medium-expert
	$(PY) -m bench report $(RESULTS)/cql-alpha50-actors-medium-expert --last-evaluations 5 --only tables
	$(PY) -m bench actions $(RESULTS)/cql-alpha50-actors-medium-expert --local-dir $(LOCAL_DATA)
	$(PY) -m bench coverage $(RESULTS)/cql-alpha50-actors-medium-expert --local-dir $(LOCAL_DATA)
	$(PY) -m bench critics $(RESULTS)/cql-alpha50-actors-medium-expert --local-dir $(LOCAL_DATA)

# A KAN actor of kan4's parameters at twice its width (configs/cpu-study-kan-width.yaml): kan[8] with
# piecewise-linear edges (G = 2, k = 1), and an MLP of that width (mlp8), on the width grid's data, whose kan4,
# mlp4, mlp38 and kan38 records its reports set beside them. Three workers, three groups of about 1h15m of one core each; run it again to resume.
# Then its reports (against kan4 and against mlp38) and Tables 5, 9 and 10 of its actors.
study-kan-width: WORKERS := $(or $(WORKERS),3)
study-kan-width: local-data
	$(GRID_RUN) configs/cpu-study-kan-width.yaml --local-dir $(LOCAL_DATA) --no-progress
	$(PY) -m bench report $(RESULTS)/cpu-study-kan-width
	$(PY) -m bench report $(RESULTS)/cpu-study-kan-width --last-evaluations 5 --only tables
	$(PY) -m bench actions $(RESULTS)/cpu-study-kan-width --local-dir $(LOCAL_DATA)
	$(PY) -m bench coverage $(RESULTS)/cpu-study-kan-width --local-dir $(LOCAL_DATA)
	$(PY) -m bench critics $(RESULTS)/cpu-study-kan-width --local-dir $(LOCAL_DATA)

# Stops at once, naming every missing dataset and how to fetch or mirror it, before any cell runs.
reproduce: setup
	$(PY) -m bench grid check configs/paper.yaml
	$(GRID_RUN) configs/paper.yaml

# The paper's grid on the local datasets (configs/local.yaml), for machines without the D4RL files.
reproduce-local: local-data
	$(GRID_RUN) configs/local.yaml --local-dir $(LOCAL_DATA)

# Tables and figures of a grid's records ($(RESULTS)/$(GRID)) with rliable statistics: `make tables GRID=paper`, into
# tables/$(GRID)/ and figures/$(GRID)/, or each of the grid file's named reports into its own folders (`reports:`;
# REPORT=NAME writes one). Every architecture is compared with the grid file's `baseline:` (else the paper's `mlp`);
# BASELINE=NAME picks another, ARCHITECTURES=a,b,... and DATASETS=a,b,... report those only, in that order; AT_STEP=N
# reports the runs as they stood at gradient step N, into tables/$(GRID)-stepN/ and figures/$(GRID)-stepN/;
# LAST_EVALUATIONS=K scores each run by the mean of its last K evaluations, into tables/$(GRID)-lastK/ and so on.
.PHONY: tables figures
GRID ?= smoke
BASELINE ?=
ARCHITECTURES ?=
DATASETS ?=
REPORT ?=
AT_STEP ?=
LAST_EVALUATIONS ?=
REPORT_SEED ?= 0
BENCH_REPORT = $(PY) -m bench report $(RESULTS)/$(GRID) $(if $(BASELINE),--baseline $(BASELINE)) --seed $(REPORT_SEED) \
	$(if $(ARCHITECTURES),--architectures $(ARCHITECTURES)) $(if $(DATASETS),--datasets $(DATASETS)) \
	$(if $(REPORT),--report $(REPORT)) $(if $(AT_STEP),--at-step $(AT_STEP)) \
	$(if $(LAST_EVALUATIONS),--last-evaluations $(LAST_EVALUATIONS))

tables: setup
	$(BENCH_REPORT) --only tables

figures: setup
	$(BENCH_REPORT) --only figures
