# tracemark: `make help` lists the targets. Every target installs what it uses.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Big downloads and build outputs live outside the clone, keyed by version: CACHE=... (on the line
# or in the environment), else TRACEMARK_CACHE (what scripts/fetch.py reads), else ~/.cache/tracemark.
CACHE ?= $(or $(TRACEMARK_CACHE),$(HOME)/.cache/tracemark)
export TRACEMARK_CACHE := $(CACHE)
# The cache folder reaches recipes, and the sub-makes of the quick pipelines, as TRACEMARK_CACHE (or
# an explicit CACHE=... on the line), never as CACHE from the caller's environment:
# llama-cpp-python's server settings read unprefixed environment variables, and take CACHE for
# their boolean `cache` option.
unexport CACHE
export CARGO_TARGET_DIR ?= $(CACHE)/target
PYTHON ?= python3
CARGO ?= cargo
# Everything runs in release mode: the tests run millions of keyed evaluations
# and the model; one profile means one build.
CARGO_FLAGS ?= --release --locked

FETCH := $(PYTHON) scripts/fetch.py
BIN := $(CARGO_TARGET_DIR)/release

# The Python environment of the tests, keyed by its pinned requirements.
PY_REQS := watermark-py/requirements-test.txt
VENV := $(CACHE)/venv-$(shell sha256sum $(PY_REQS) | cut -c1-12)
VPY := $(VENV)/bin/python

# Fuzzing: a pinned cargo-fuzz, installed under $(CACHE); build output, corpora, logs and
# crash inputs go to $(CACHE)/fuzz (scripts/fuzz-smoke.sh says how it picks its mode).
CARGO_FUZZ_VERSION := 0.13.2
CARGO_FUZZ := $(CACHE)/tools/cargo-fuzz-$(CARGO_FUZZ_VERSION)/bin/cargo-fuzz
FUZZ_SECONDS ?= 30
FUZZ_MODE ?= auto

.PHONY: help setup data demo test-recipe suspect-harvest suspect-api suspect-calibrate semantic-drift semantic-frontier semantic-student check check-rust check-python test test-rust test-python test-vllm test-spark test-browser venv python bench bench-scaling flamegraphs bench-python bench-spark bench-serving bench-serve test-serve-fuzz test-serve-abuse gpu-check-prepare mistralrs-demo lint fuzz-smoke eval eval-quick frontier distill distill-quick distill-transformer spoof spoof-quick accounts campaign campaign-quick calibrate calibrate-multilingual clean-cache

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

data: ## Fetch the model, a real tokenizer, human text and the sentence embedder (cached under $(CACHE))
	@$(FETCH) model >/dev/null
	@$(FETCH) tokenizer >/dev/null
	@$(FETCH) human-text >/dev/null
	@$(FETCH) embedder >/dev/null

setup: data ## Fetch data and build everything
	$(CARGO) build $(CARGO_FLAGS) --workspace --all-targets

demo: ## Generate watermarked and plain text with SmolLM2, verify both, print the verdicts
	@$(FETCH) model >/dev/null
	$(CARGO) run $(CARGO_FLAGS) -q -p tracemark-examples --bin demo -- $(DEMO_ARGS)

# docs/verifier.md's five commands, run as written on a fresh demo's output (scripts/check-recipe.py).
RECIPE_DIR := $(CACHE)/recipe-test
test-recipe: ## The docs' five-command recipe reproduces `make demo`'s verdict
	@$(FETCH) model >/dev/null
	$(CARGO) build $(CARGO_FLAGS) -q -p tracemark-cli --bin tracemark -p tracemark-examples --bin demo
	rm -rf "$(RECIPE_DIR)" && mkdir -p "$(RECIPE_DIR)"
	"$(BIN)/demo" --out-dir "$(RECIPE_DIR)/demo" > "$(RECIPE_DIR)/demo.out"
	PATH="$(BIN):$$PATH" $(PYTHON) scripts/check-recipe.py "$(RECIPE_DIR)/demo" "$(RECIPE_DIR)/demo.out"

# The fast inner loop: what a contributor runs after every change. Unit, property and golden
# tests of the product crates (core, stats, verifier, cli, candle without the model), the Python
# package's fast tests, and the import-cycle check; no model, no apt, no root, and no network
# once the Python environment exists. `make test` is the whole suite (CI runs it).
# Product crates: everything but the lab, the examples and the benches.
PRODUCT_CRATES := -p tracemark-core -p tracemark-stats -p tracemark-verifier -p tracemark-cli -p tracemark-candle
# The Python tests that need neither the model, the CLI, torch nor a foreign stack.
PY_FAST_TESTS := tests/test_golden.py tests/test_errors.py tests/test_detect.py tests/test_hypothesis.py \
	tests/test_processors.py tests/test_report.py tests/test_serving.py tests/test_sentences.py
check: check-rust check-python ## The fast inner loop (a few minutes warm): product crates' unit, property and golden tests, fast Python tests, no import cycles
	@[ ! -f ../shared/tools/module-cycles.py ] || $(PYTHON) ../shared/tools/module-cycles.py >/dev/null \
	    || { $(PYTHON) ../shared/tools/module-cycles.py; exit 1; }

check-rust: ## The product crates' unit, property, golden and doc tests (no model)
	$(CARGO) test $(CARGO_FLAGS) $(PRODUCT_CRATES)

check-python: python ## The Python package's fast tests (golden vectors, errors, detection, processors, reports)
	cd watermark-py && "$(VPY)" -m pytest -q -p no:cacheprovider $(PY_FAST_TESTS)

test: test-rust test-python test-recipe test-vllm test-spark test-browser test-serve-fuzz test-serve-abuse eval-quick distill-quick spoof-quick campaign-quick ## All Rust and Python tests

# The real-model tests (tracemark-candle's tests/model.rs) and the calibration on human text are
# #[ignore]d for a bare `cargo test`; the second run here runs them, and they fail without the data.
test-rust: data ## Rust tests, including those on the real model, tokenizers and human text
	export TRACEMARK_MODEL="$$($(FETCH) model)" TRACEMARK_TOKENIZER="$$($(FETCH) tokenizer)" \
	       TRACEMARK_HUMAN_TEXT="$$($(FETCH) human-text)" TRACEMARK_EMBEDDER="$$($(FETCH) embedder)" \
	       TRACEMARK_HUMAN_TEXT_MULTILINGUAL="$$($(FETCH) human-text-multilingual)"; \
	$(CARGO) test $(CARGO_FLAGS); \
	$(CARGO) test $(CARGO_FLAGS) -- --ignored

eval: data ## The evaluation harness on SmolLM2, then the frontier (about two hours; resumable). QUICK=1: a small subset
	export TRACEMARK_MODEL="$$($(FETCH) model)" TRACEMARK_HUMAN_TEXT="$$($(FETCH) human-text)"; \
	$(CARGO) run $(CARGO_FLAGS) -q -p tracemark-lab --bin eval -- $(if $(QUICK),--quick,) $(EVAL_ARGS)
	$(MAKE) --no-print-directory frontier

# The frontier (lab/python/frontier.py): every scheme x context width x scoring on
# SmolLM2 answers through transformers: power, robustness to edits and paraphrase,
# quality, calibration of the model-assisted scorings, the recommended default.
frontier: data python ## The frontier alone: power, robustness and quality of every scheme x context x scoring; the recommended default (about an hour; cached, resumable). QUICK=1: a small version
	export TRACEMARK_MODEL="$$($(FETCH) model)" TRACEMARK_HUMAN_TEXT="$$($(FETCH) human-text)"; \
	cd lab/python && "$(VPY)" frontier.py $(if $(QUICK),--quick,) $(FRONTIER_ARGS)

eval-quick: ## The evaluation pipeline on 3 prompts (part of `make test`)
	$(MAKE) --no-print-directory eval QUICK=1

$(VENV)/.installed: $(PY_REQS)
	$(PYTHON) -m venv "$(VENV)"
	"$(VPY)" -m pip install -q --upgrade pip
	"$(VPY)" -m pip install -q -r $(PY_REQS)
	touch "$@"

venv: $(VENV)/.installed ## The Python environment (torch, transformers, maturin, pytest; cached)

# One wheel of the package, installed into every environment that tests it.
WHEEL_DIR := $(CACHE)/wheel

# Built again only when the wheel's sources changed (their content hash names the stamp, so two
# checkouts sharing this cache never take each other's wheel): the sub-makes of `make test`
# (eval-quick, distill-quick, ...) do not rebuild it.
WHEEL_SOURCES := Cargo.toml Cargo.lock $(shell find watermark-py/Cargo.toml watermark-py/pyproject.toml watermark-py/src \
	watermark-py/python watermark-core/Cargo.toml watermark-core/src verifier/Cargo.toml verifier/src verifier/stats/Cargo.toml \
	verifier/stats/src candle/Cargo.toml candle/src -type f -not -name '*.pyc' 2>/dev/null | LC_ALL=C sort)
WHEEL_HASH := $(shell (echo $(WHEEL_SOURCES); cat $(WHEEL_SOURCES)) 2>/dev/null | sha256sum | cut -c1-16)
WHEEL_STAMP := $(VENV)/.tracemark-wheel-$(WHEEL_HASH)
$(WHEEL_STAMP): $(VENV)/.installed
	rm -rf "$(WHEEL_DIR)" "$(VENV)"/.tracemark-wheel*
	"$(VPY)" -m maturin build -q --release -m watermark-py/Cargo.toml -o "$(WHEEL_DIR)"
	"$(VPY)" -m pip install -q --force-reinstall --no-deps "$(WHEEL_DIR)"/tracemark-*.whl
	touch "$@"

python: $(WHEEL_STAMP) ## Build and install the `tracemark` Python package into the environment

# llama-cpp-python builds llama.cpp from source (PyPI has no CPU wheel): once, into a cached wheel.
LLAMA_REQS := watermark-py/requirements-llama.txt
LLAMA_STAMP := $(VENV)/.llama-$(shell sha256sum $(LLAMA_REQS) | cut -c1-12)
WHEELS := $(CACHE)/wheels

$(LLAMA_STAMP): $(VENV)/.installed $(LLAMA_REQS)
	mkdir -p "$(WHEELS)"
	CMAKE_ARGS="-DGGML_NATIVE=off" "$(VPY)" -m pip wheel -q --no-deps --find-links "$(WHEELS)" -w "$(WHEELS)" \
	    "$$(grep -o '^llama-cpp-python[^ ]*' $(LLAMA_REQS) | sed 's/\[server\]//')"
	"$(VPY)" -m pip install -q --find-links "$(WHEELS)" -r $(LLAMA_REQS)
	touch "$@"

# SGLang's processor class, without SGLang's CUDA pins (see requirements-sglang.txt).
SGLANG_VERSION := 0.5.23
SGLANG_REQS := watermark-py/requirements-sglang.txt
SGLANG_STAMP := $(VENV)/.sglang-$(SGLANG_VERSION)-$(shell sha256sum $(SGLANG_REQS) | cut -c1-12)

$(SGLANG_STAMP): $(VENV)/.installed $(SGLANG_REQS)
	"$(VPY)" -m pip install -q --no-deps sglang==$(SGLANG_VERSION)
	"$(VPY)" -m pip install -q -r $(SGLANG_REQS)
	touch "$@"

# synthid-text's own processor (make test-python), installed without its pins (torch 2.4, numpy 1.26,
# transformers 4.43, jax[cuda]): its torch processor needs none of them (requirements-synthid.txt).
SYNTHID_REQS := watermark-py/requirements-synthid.txt
SYNTHID_STAMP := $(VENV)/.synthid-$(shell sha256sum $(SYNTHID_REQS) | cut -c1-12)

$(SYNTHID_STAMP): $(VENV)/.installed $(SYNTHID_REQS)
	"$(VPY)" -m pip install -q --no-deps -r $(SYNTHID_REQS)
	touch "$@"

# vLLM pins its own torch (a CUDA build; its classes run on CPU): it gets its own cached environment.
VLLM_REQS := watermark-py/requirements-vllm.txt
VLLM_VENV := $(CACHE)/venv-vllm-$(shell sha256sum $(VLLM_REQS) | cut -c1-12)

$(VLLM_VENV)/.installed: $(VLLM_REQS)
	$(PYTHON) -m venv "$(VLLM_VENV)"
	"$(VLLM_VENV)/bin/python" -m pip install -q --upgrade pip
	"$(VLLM_VENV)/bin/python" -m pip install -q -r $(VLLM_REQS)
	touch "$@"

test-vllm: python $(VLLM_VENV)/.installed ## tracemark.vllm through vLLM's own classes (both runners; its own cached environment)
	"$(VLLM_VENV)/bin/python" -m pip install -q --force-reinstall --no-deps "$(WHEEL_DIR)"/tracemark-*.whl
	cd watermark-py && "$(VLLM_VENV)/bin/python" -m pytest -q tests-vllm

# pyspark gets its own cached environment too (pandas < 3); Spark needs a Java runtime (17), installed here when missing.
SPARK_REQS := watermark-py/requirements-spark.txt
SPARK_VENV := $(CACHE)/venv-spark-$(shell sha256sum $(SPARK_REQS) | cut -c1-12)
SPARK_ENV := SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON="$(SPARK_VENV)/bin/python" PYSPARK_DRIVER_PYTHON="$(SPARK_VENV)/bin/python"

$(SPARK_VENV)/.installed: $(SPARK_REQS)
	@command -v java >/dev/null || { \
	    if [ "$$(id -u)" = 0 ]; then sudo=; elif command -v sudo >/dev/null; then sudo=sudo; \
	    else echo "test-spark: Spark needs Java 17 and installing it needs root (apt-get install openjdk-17-jre-headless)" >&2; exit 1; fi; \
	    $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >/dev/null; }
	$(PYTHON) -m venv "$(SPARK_VENV)"
	"$(SPARK_VENV)/bin/python" -m pip install -q --upgrade pip
	"$(SPARK_VENV)/bin/python" -m pip install -q -r $(SPARK_REQS)
	touch "$@"

test-spark: python $(SPARK_VENV)/.installed ## tracemark.spark on Spark local[2]: the same lines, counts and p-values as `tracemark scan`, bit for bit (its own cached environment)
	"$(SPARK_VENV)/bin/python" -m pip install -q --force-reinstall --no-deps "$(WHEEL_DIR)"/tracemark-*.whl
	$(CARGO) build $(CARGO_FLAGS) -q -p tracemark-cli --bin tracemark
	cd watermark-py && TRACEMARK_CLI="$(BIN)/tracemark" $(SPARK_ENV) "$(SPARK_VENV)/bin/python" -m pytest -q -p no:cacheprovider tests-spark

bench-spark: python $(SPARK_VENV)/.installed ## Corpus scan throughput: `tracemark scan --jobs 1` against Spark local[1] and local[2]; writes benches/RESULTS.md (run on an idle machine)
	"$(SPARK_VENV)/bin/python" -m pip install -q --force-reinstall --no-deps "$(WHEEL_DIR)"/tracemark-*.whl
	$(CARGO) build $(CARGO_FLAGS) -q -p tracemark-cli --bin tracemark
	$(SPARK_ENV) "$(SPARK_VENV)/bin/python" benches/python/spark_scan.py --cli "$(BIN)/tracemark" $(if $(QUICK),--quick,)

# pytest exits with 5 when it collects no test: that fails the target (and CI) too.
test-python: python data $(LLAMA_STAMP) $(SGLANG_STAMP) $(SYNTHID_STAMP) ## Python tests (golden vectors, errors, hypothesis, transformers, llama.cpp, SGLang, stubs)
	$(CARGO) build $(CARGO_FLAGS) -q -p tracemark-cli --bin tracemark
	export TRACEMARK_MODEL="$$($(FETCH) model)" TRACEMARK_HUMAN_TEXT="$$($(FETCH) human-text)" TRACEMARK_CLI="$(BIN)/tracemark" \
	       TRACEMARK_EMBEDDER="$$($(FETCH) embedder)"; cd watermark-py && "$(VPY)" -m pytest -q

# The HTML reports in a real browser: Chromium from Debian, installed here when missing (root or sudo).
test-browser: python ## HTML reports in headless Chromium: verdicts in the DOM, no script, console or network error. UPDATE_SCREENSHOTS=1: into docs/report/
	@command -v chromium >/dev/null || { \
	    if [ "$$(id -u)" = 0 ]; then sudo=; elif command -v sudo >/dev/null; then sudo=sudo; \
	    else echo "test-browser: chromium is not installed and installing it needs root (apt-get install chromium)" >&2; exit 1; fi; \
	    echo "installing chromium (Debian package) ..."; \
	    { $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
	        || { echo "test-browser: apt-get could not install chromium" >&2; exit 1; }; }
	$(CARGO) build $(CARGO_FLAGS) -q -p tracemark-cli --bin tracemark
	export TRACEMARK_MODEL="$$($(FETCH) model)" TRACEMARK_CLI="$(BIN)/tracemark"; \
	"$(VPY)" -m pytest -q -p no:cacheprovider tests/browser $(if $(UPDATE_SCREENSHOTS),--update-screenshots,)

# schemathesis gets its own cached environment (benches/requirements-schemathesis.txt); scripts/serve-fuzz.sh says what it runs.
test-serve-fuzz: ## `tracemark serve` fuzzed from its own OpenAPI description (schemathesis, every check): no 5xx, answers as described, 429 when limited
	$(CARGO) build $(CARGO_FLAGS) -q -p tracemark-cli --bin tracemark
	TRACEMARK="$(BIN)/tracemark" PYTHON="$(PYTHON)" scripts/serve-fuzz.sh

test-serve-abuse: ## `tracemark serve` under abuse on loopback (scripts/serve-abuse.py, about 90 s): slow and idle clients closed, 2,000 idle connections, one token's costly load vs another's p99, deadlines, RSS after timeouts, stream memory, response bounds, log volume
	$(CARGO) build $(CARGO_FLAGS) -q -p tracemark-cli --bin tracemark
	$(PYTHON) scripts/serve-abuse.py --cli "$(BIN)/tracemark"

distill: data ## The distillation experiment: harvest, n-gram/MLP students and the transformer student, radioactivity tests (about two hours; cached, resumable)
	export TRACEMARK_MODEL="$$($(FETCH) model)"; \
	$(CARGO) run $(CARGO_FLAGS) -q -p tracemark-lab --bin distill -- $(if $(QUICK),--quick,) $(DISTILL_ARGS)
	$(MAKE) --no-print-directory distill-transformer

# The transformer student (lab/python/transformer_student.py): SmolLM2 fine-tuned with torch on the CPU.
distill-transformer: data python ## The transformer student alone: SmolLM2 fine-tuned on 0-100% watermarked answers, laundering, 1,000-key controls (about an hour; cached, resumable)
	$(CARGO) build $(CARGO_FLAGS) -q -p tracemark-cli --bin tracemark
	export TRACEMARK_MODEL="$$($(FETCH) model)" TRACEMARK_HUMAN_TEXT="$$($(FETCH) human-text)" TRACEMARK_CLI="$(BIN)/tracemark"; \
	"$(VPY)" lab/python/transformer_student.py $(if $(QUICK),--quick,) $(TRANSFORMER_ARGS)

# Issue 26 at scale: the harvest (about 470,000 answer tokens; hours on this machine, one chunk of
# 32 answers at a time, resumable across sessions), then students served by llama-cpp-python's
# server and audited only through it. QUICK=1: a small harvest and two students, minutes.
suspect-harvest: data python ## The scale harvest for the suspect-API experiment (hours; resumable; run it in the background)
	export TRACEMARK_MODEL="$$($(FETCH) model)"; \
	"$(VPY)" lab/python/suspect_harvest.py $(SUSPECT_HARVEST_ARGS)

suspect-api: data python $(LLAMA_STAMP) ## Students of the harvest behind a real OpenAI-compatible server, audited through it (hours; cached, resumable)
	$(CARGO) build $(CARGO_FLAGS) -q -p tracemark-cli --bin tracemark
	export TRACEMARK_MODEL="$$($(FETCH) model)" TRACEMARK_CLI="$(BIN)/tracemark"; \
	"$(VPY)" lab/python/suspect_students.py $(if $(QUICK),--quick,) $(SUSPECT_ARGS)

suspect-calibrate: data python $(LLAMA_STAMP) ## The API audit's calibration: the unwatermarked teacher behind llama-cpp-python's server, 1,000 control keys (about an hour; cached)
	$(CARGO) build $(CARGO_FLAGS) -q -p tracemark-cli --bin tracemark
	export TRACEMARK_MODEL="$$($(FETCH) model)" TRACEMARK_CLI="$(BIN)/tracemark"; \
	"$(VPY)" lab/python/suspect_calibrate.py $(SUSPECT_CALIBRATE_ARGS)

# Issue 25, deliverable 6: the semantic layer, the token layer and the layered verdict on SmolLM2's
# answers, clean and after every frontier attack (paraphrase once and twice), quality, accounts.
semantic-drift: data python ## How far SmolLM2's paraphrase moves each sentence in the semantic layer's partition (minutes; needs `make semantic-frontier`'s cache)
	export TRACEMARK_EMBEDDER="$$($(FETCH) embedder)"; \
	cd lab/python && "$(VPY)" semantic_drift.py $(SEMANTIC_DRIFT_ARGS)

semantic-frontier: data python ## The frontier's semantic arms (about an hour; cached, resumable). QUICK=1: three short answers, minutes
	$(CARGO) build $(CARGO_FLAGS) -q -p tracemark-cli --bin tracemark
	export TRACEMARK_MODEL="$$($(FETCH) model)" TRACEMARK_EMBEDDER="$$($(FETCH) embedder)" \
	       TRACEMARK_HUMAN_TEXT="$$($(FETCH) human-text)" TRACEMARK_CLI="$(BIN)/tracemark"; \
	cd lab/python && "$(VPY)" semantic_frontier.py $(if $(QUICK),--quick,) $(SEMANTIC_FRONTIER_ARGS)

# Issue 25, deliverable 7: students fine-tuned on the frontier's layered answers, as served and
# paraphrased once; black box and reading mode of each layer.
semantic-student: data python ## Does the semantic layer reach a student trained on laundered answers? (about 30 minutes; needs `make semantic-frontier`'s cache). QUICK=1: minutes
	$(CARGO) build $(CARGO_FLAGS) -q -p tracemark-cli --bin tracemark
	export TRACEMARK_MODEL="$$($(FETCH) model)" TRACEMARK_EMBEDDER="$$($(FETCH) embedder)" TRACEMARK_CLI="$(BIN)/tracemark"; \
	cd lab/python && "$(VPY)" semantic_student.py $(if $(QUICK),--quick,) $(SEMANTIC_STUDENT_ARGS)

distill-quick: ## The distillation pipeline on a small harvest (part of `make test`)
	$(MAKE) --no-print-directory distill QUICK=1

spoof: data ## Watermark stealing: spoofing and scrubbing against harvest size, cohort keys and the artifact test (hours; cached, resumable)
	export TRACEMARK_MODEL="$$($(FETCH) model)"; \
	$(CARGO) run $(CARGO_FLAGS) -q -p tracemark-lab --bin spoof -- $(if $(QUICK),--quick,) $(SPOOF_ARGS)

spoof-quick: ## The stealing pipeline on a tiny harvest (part of `make test`)
	$(MAKE) --no-print-directory spoof QUICK=1

accounts: data ## Tokens needed to name the account a SmolLM2 answer was served to, among 1, 24,000 and 1,000,000 account keys; the scan's time and memory (about 15 min)
	export TRACEMARK_MODEL="$$($(FETCH) model)"; \
	$(CARGO) run $(CARGO_FLAGS) -q -p tracemark-lab --bin accounts -- $(ACCOUNTS_ARGS)

campaign: data ## Student-level account attribution: window-cohort keys on a simulated 3-actor campaign among 24,000 accounts (n-gram stand-in teacher; about 25 min). QUICK=1: a small version
	export TRACEMARK_MODEL="$$($(FETCH) model)" TRACEMARK_HUMAN_TEXT="$$($(FETCH) human-text)"; \
	$(CARGO) run $(CARGO_FLAGS) -q -p tracemark-lab --bin campaign -- $(if $(QUICK),--quick,) $(CAMPAIGN_ARGS)

campaign-quick: ## The campaign on a small harvest; fails on any false accusation or if the largest actor is not named (part of `make test`)
	$(MAKE) --no-print-directory campaign QUICK=1

CALIBRATION := eval/results/calibration-$(shell date -u +%F).md
calibrate: ## False-positive rates of every scheme over 10M (document, key) tests each, and a battery on the keyed values (about 17 min on 2 cores). QUICK=1: 100k tests
	export TRACEMARK_HUMAN_TEXT="$$($(FETCH) human-text)" TRACEMARK_TOKENIZER="$$($(FETCH) tokenizer)"; \
	$(CARGO) run $(CARGO_FLAGS) -q -p tracemark-lab --bin calibrate -- \
	    --corpus "$$TRACEMARK_HUMAN_TEXT" --tokenizer "$$TRACEMARK_TOKENIZER" \
	    $(if $(QUICK),--tests 100000 --battery-samples 65536 --out $(CACHE)/calibration-quick.md --title "Calibration (quick)",--out $(CALIBRATION) --title "Calibration at scale, $(shell date -u +%F)") \
	    $(CALIBRATE_ARGS) >/dev/null

MULTILINGUAL := eval/results/multilingual-$(shell date -u +%F).md
calibrate-multilingual: ## The text path's false-positive rates (canonical form v2) on man pages and fortunes in German, French, Spanish, Russian and Japanese: 50 documents each under 1,000 keys
	export TRACEMARK_MODEL="$$($(FETCH) model)"; \
	$(CARGO) run $(CARGO_FLAGS) -q -p tracemark-lab --bin multilingual -- \
	    --corpus "$$($(FETCH) human-text-multilingual)" --out $(MULTILINGUAL) $(MULTILINGUAL_ARGS) >/dev/null

bench: data ## Criterion benches; writes the ratio tables of benches/RESULTS.md
	$(CARGO) bench -p tracemark-benches --bench decode_step --bench prf --bench detect
	export TRACEMARK_TOKENIZER="$$($(FETCH) tokenizer)" TRACEMARK_HUMAN_TEXT="$$($(FETCH) human-text)"; \
	$(CARGO) bench -p tracemark-benches --bench text
	$(PYTHON) benches/report.py $(CARGO_TARGET_DIR)/criterion text text/ tokenizers
	$(PYTHON) benches/report.py $(CARGO_TARGET_DIR)/criterion decode_step step/ floor
	$(PYTHON) benches/report.py $(CARGO_TARGET_DIR)/criterion detect detect/ baseline-sum-ids
	$(PYTHON) benches/report.py $(CARGO_TARGET_DIR)/criterion prf prf mix32

bench-scaling: ## Scaling curves (decode step against V and batch, detection against length, keyrings, accounts to 10^6): SVG plots in benches/ and a table in benches/RESULTS.md (run on an idle machine; QUICK=1: a smoke run)
	$(CARGO) bench -q -p tracemark-benches --bench scaling -- $(if $(QUICK),--quick,) > $(CARGO_TARGET_DIR)/scaling.jsonl
	$(PYTHON) benches/scaling.py $(CARGO_TARGET_DIR)/scaling.jsonl

flamegraphs: data ## Flamegraphs (SVG, benches/flame/) of the decode step per scheme, detection on ids and `tracemark scan` of text: perf's cpu-clock samples drawn by inferno (installed into the cache; run on an idle machine)
	bash benches/flamegraphs.sh

bench-python: python ## Side by side with transformers' watermarking (per step and detection); writes benches/RESULTS.md
	"$(VPY)" benches/python/compare.py

bench-serving: python data $(LLAMA_STAMP) ## The watermark's cost in llama.cpp, the Python protocol path and the device path; writes benches/RESULTS.md (run on an idle machine)
	export TRACEMARK_MODEL="$$($(FETCH) model)"; "$(VPY)" benches/python/serving.py $(if $(QUICK),--quick,)

bench-serve: venv ## Load test of `tracemark serve` with wrk: /health, /v1/detect (text, ids); writes benches/RESULTS.md (run on an idle machine). QUICK=1: a smoke run
	$(CARGO) build $(CARGO_FLAGS) -q -p tracemark-cli --bin tracemark
	"$(VPY)" benches/python/serve_load.py --cli "$(BIN)/tracemark" $(if $(QUICK),--quick,)

# mistral.rs is a large build (about 500 crates, candle 0.10): its own workspace and target directory, built once.
MISTRALRS_TARGET := $(CACHE)/target-mistralrs

mistralrs-demo: data ## tracemark in mistral.rs: a CustomLogitsProcessor on the SmolLM2 GGUF, verified (first build 30-60 min)
	CARGO_TARGET_DIR="$(MISTRALRS_TARGET)" $(CARGO) build --release --locked --manifest-path mistralrs-example/Cargo.toml
	"$(MISTRALRS_TARGET)/release/tracemark-mistralrs-example" "$$($(FETCH) model)"

gpu-check-prepare: python ## dist/gpu: what scripts/gpu-check.sh installs on a lent GPU machine (it fetches nothing)
	rm -rf dist/gpu && mkdir -p dist/gpu
	cp "$(WHEEL_DIR)"/tracemark-*.whl dist/gpu/
	"$(VPY)" -m pip download -q -d dist/gpu pytest==$$("$(VPY)" -c "import pytest; print(pytest.__version__)")

lint: ## rustfmt, clippy -D warnings, rustdoc -D warnings, golden vectors up to date
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check
	$(CARGO) fmt --manifest-path mistralrs-example/Cargo.toml -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS=-Dwarnings $(CARGO) doc --workspace --no-deps
	$(PYTHON) testdata/gen_vectors.py --check >/dev/null

$(CARGO_FUZZ):
	env -u CARGO_TARGET_DIR $(CARGO) install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked \
	    --root "$(CACHE)/tools/cargo-fuzz-$(CARGO_FUZZ_VERSION)"

fuzz-smoke: $(CARGO_FUZZ) ## Every fuzz target for FUZZ_SECONDS (30) s with cargo-fuzz; fails on a crash
	CARGO_FUZZ="$(CARGO_FUZZ)" CACHE="$(CACHE)" FUZZ_SECONDS="$(FUZZ_SECONDS)" FUZZ_MODE="$(FUZZ_MODE)" \
	    PYTHON="$(PYTHON)" scripts/fuzz-smoke.sh

clean-cache: ## Remove the cache (models, data, build outputs)
	rm -rf "$(CACHE)"
