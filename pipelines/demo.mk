# demo.mk: `make demo`, the whole experiment end to end on this machine.
#
#   make demo                      (the top Makefile builds, then runs this)
#   make -f pipelines/demo.mk [VAR=value...]
#
# The model and corpus are chosen once, by a short probe (demo-choose.sh,
# demo-corpus.sh; delete demo/choice.mk and demo/corpus.stamp to choose
# again). When the hub ($HF_ENDPOINT, else huggingface.co) answers within
# DEMO_PROBE_TIMEOUT seconds: distilgpt2 fetched from it by model-fetch,
# layer 5 (the seed's setting), with a smaller corpus and token budget to keep
# the run short; otherwise the small GPT-2 shipped with the project
# (examples/models/tiny-gpt2-docs, real trained weights, 4 layers, 1024 MLP
# neurons per layer), layer 3. The corpus: the first bytes of a public
# dataset (TinyStories' validation text on the hub) when it can be fetched,
# else the documentation already on this machine. Explanations come from the
# API when OPENAI_API_KEY is set (a bounded number of features: it costs
# money), from the offline baseline otherwise. Everything goes under demo/; it
# ends by printing the path of the report, and a second run redoes nothing.
# MODEL=, LAYER=, CORPUS_BYTES=... on the command line override the choice.
# Each step prints one short line (what, how much, how long: quiet.mk); V=1
# prints the full command lines instead.
#
# Measured (offline: shipped model, local documentation): 2.3 min wall from
# a fresh clone, build included, on 2 idle cores; 6.3 min (3.5 min CPU) on 2
# cores shared with other jobs (7.5 min at a load of about 10); 960 MB under demo/ (the bf16 activation store); the
# report's score was 96.3% (loss recovered against zero ablation; 92.9%
# against mean ablation); a second run took 0.1 s and rewrote nothing. The online setting (distilgpt2)
# could not be run here (no hub), but its stages were timed on a model of
# distilgpt2's shape (random weights) under the same load: forward + tap
# 610 tokens/s, a 4x top-k fit 310 tokens/s, recon-score 2 min per 64
# windows, encode + top-k 600 tokens/s; for the ~75K tokens of 300 KB of
# TinyStories that is about 11 minutes, plus the 350 MB download.

HERE         := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
DEMO_DIR     ?= demo
DEMO_CHOICE  := $(DEMO_DIR)/choice.mk
# DEMO_SOURCE, DEMO_MODEL, DEMO_LAYER, DEMO_CORPUS_BYTES, DEMO_TOKENS, DEMO_DICT,
# DEMO_RECON_RECORDS
include $(DEMO_CHOICE)
MODEL        ?= $(DEMO_MODEL)
LAYER        ?= $(DEMO_LAYER)
CORPUS_BYTES ?= $(DEMO_CORPUS_BYTES)
CTX          ?= 128
SHARDS       ?= 4
ARCH         ?= topk
K            ?= 32
DICT         ?= $(DEMO_DICT)
L1           ?= 5
TOKENS       ?= $(DEMO_TOKENS)
EXPLAIN_FEATURES ?= $(if $(OPENAI_API_KEY),0-99,)
# short runs: small batches, a short warmup; score on 2 (distilgpt2: 1) x 64 windows
FIT_FLAGS    ?= --batch 1024 --warmup 20
RECON_RECORDS ?= $(or $(DEMO_RECON_RECORDS),2)
JOBS         ?= 2

CORPUS := $(DEMO_DIR)/corpus
include $(HERE)/quiet.mk

EXPERIMENT = $(MAKE) --no-print-directory -f $(HERE)/experiment.mk -j$(JOBS) \
	RUNS=$(DEMO_DIR)/runs MODEL=$(MODEL) CORPUS=$(CORPUS) LAYER=$(LAYER) CTX=$(CTX) \
	SHARDS=$(SHARDS) ARCH=$(ARCH) K=$(K) DICT=$(DICT) L1=$(L1) TOKENS=$(TOKENS) \
	EXPLAIN_FEATURES=$(EXPLAIN_FEATURES) FIT_FLAGS="$(FIT_FLAGS)" RECON_RECORDS=$(RECON_RECORDS)

.PHONY: demo choose
demo: $(DEMO_DIR)/corpus.stamp
	@echo "== saepipe demo: model $(MODEL) ($(DEMO_SOURCE)), layer $(LAYER), $(ARCH) $(DICT) dictionary, \
explainer $(if $(OPENAI_API_KEY),openai,baseline)"
	@$(EXPERIMENT) report

# only the choice of model and corpus, then what was chosen
choose: $(DEMO_DIR)/corpus.stamp
	@echo "model=$(MODEL) layer=$(LAYER) source=$(DEMO_SOURCE) corpus=$(CORPUS)"

# The model is chosen once (make reads the choice back in); delete demo/ (or
# choice.mk) to choose again.
$(DEMO_CHOICE):
	@mkdir -p $(@D)
	@sh $(HERE)/demo-choose.sh $@

# The corpus is chosen once; delete demo/ (or this stamp) to choose again.
$(DEMO_DIR)/corpus.stamp: | $(DEMO_CHOICE)
	@echo "== corpus: a public dataset if it can be fetched, else text under /usr/share/doc; about $(CORPUS_BYTES) bytes"
	@mkdir -p $(DEMO_DIR)
	$(step_begin)sh $(HERE)/demo-corpus.sh $(CORPUS) $(CORPUS_BYTES) \
	$(call step_end,CORPUS,$$(ls $(CORPUS) | wc -l) documents in $(call howmuch,bytes,$(CORPUS)))
	$(Q)touch $@
