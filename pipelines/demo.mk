# demo.mk: `make demo`, the whole experiment end to end on this machine.
#
#   make demo                      (the top Makefile builds, then runs this)
#   make -f pipelines/demo.mk [VAR=value...]
#
# Offline by default: the small GPT-2 shipped with the project
# (examples/models/tiny-gpt2-docs, real trained weights, 4 layers, 1024 MLP
# neurons per layer) and a corpus of the documentation already on this
# machine (pipelines/demo-corpus.sh). Explanations come from the API when
# OPENAI_API_KEY is set (a bounded number of features: it costs money), from
# the offline baseline otherwise. Everything goes under demo/; it ends by
# printing the path of the report, and a second run redoes nothing.
#
# Measured: 7.5 min wall (3.6 min CPU) on 2 cores that other jobs kept at a
# load of about 10; about 1 GB under demo/ (the bf16 activation store);
# the report's score was 96% (loss recovered against zero ablation).
#
# MODEL=distilgpt2 LAYER=5 (fetched by model-fetch when the hub is
# reachable) runs the seed's own setting; that takes far longer than the
# default on two cores.

DEMO_DIR     ?= demo
MODEL        ?= examples/models/tiny-gpt2-docs
LAYER        ?= 3
CORPUS_BYTES ?= 1000000
CTX          ?= 128
SHARDS       ?= 4
ARCH         ?= topk
K            ?= 32
DICT         ?= 4x
L1           ?= 5
TOKENS       ?= 400K
EXPLAIN_FEATURES ?= $(if $(OPENAI_API_KEY),0-99,)
# short runs: small batches, a short warmup; score on 2 x 64 windows
FIT_FLAGS    ?= --batch 1024 --warmup 20
RECON_RECORDS ?= 2
JOBS         ?= 2

HERE   := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
CORPUS := $(DEMO_DIR)/corpus

EXPERIMENT = $(MAKE) --no-print-directory -f $(HERE)/experiment.mk -j$(JOBS) \
	RUNS=$(DEMO_DIR)/runs MODEL=$(MODEL) CORPUS=$(CORPUS) LAYER=$(LAYER) CTX=$(CTX) \
	SHARDS=$(SHARDS) ARCH=$(ARCH) K=$(K) DICT=$(DICT) L1=$(L1) TOKENS=$(TOKENS) \
	EXPLAIN_FEATURES=$(EXPLAIN_FEATURES) FIT_FLAGS="$(FIT_FLAGS)" RECON_RECORDS=$(RECON_RECORDS)

.PHONY: demo
demo: $(DEMO_DIR)/corpus.stamp
	@echo "== saepipe demo: model $(MODEL), layer $(LAYER), $(ARCH) $(DICT) dictionary, \
explainer $(if $(OPENAI_API_KEY),openai,baseline)"
	@$(EXPERIMENT) report

# The corpus is chosen once; delete demo/ (or this stamp) to choose again.
$(DEMO_DIR)/corpus.stamp:
	@echo "== corpus: text under /usr/share/doc, about $(CORPUS_BYTES) bytes"
	@mkdir -p $(DEMO_DIR)
	sh $(HERE)/demo-corpus.sh $(CORPUS) $(CORPUS_BYTES)
	@touch $@
