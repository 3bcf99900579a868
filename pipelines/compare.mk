# compare.mk: do larger dictionaries give more specific features? Two or
# more dictionaries of one hook, trained from ONE read of experiment.mk's
# activation store (its SWEEP), each scored (recon-score), collected
# (topk-ctx) and explained (explain-gpt4), then set side by side by
# sae-compare and drawn by sae-report --compare.
#
#   make -f pipelines/compare.mk [VAR=value...] [TARGET]
#
# Variables (experiment.mk's, and):
#   SIZES      dictionary sizes, smallest first [8x 32x 128x]
#   ARCH, K, L1  every dictionary's architecture [topk, 32, 5]
#   TOKENS     training rows of every fit [12K: what 128x of a 1024-wide MLP
#              (131,072 latents) takes in about 20 minutes on 2 cores
#              shared with other jobs, 55 s a step of 1024 rows; a smoke
#              run: at this budget and the default learning rate the
#              decoders stay near their random start. README "Do larger
#              dictionaries..." used TOKENS=100K, and --lr 0.004 in
#              FIT_FLAGS for a run whose splitting can be measured]
#   TOPK_RECORDS  records (8 windows each) of the held-out shard's contexts
#              that every dictionary encodes for topk-ctx [16]
#   CORPUS     the text; when empty, demo-corpus.sh writes about
#              CORPUS_BYTES of it under $(RUNS)/corpus first
#   COMPARE_ROWS  held-out rows of the activation sample [4096]
#   COMPARE_FLAGS more sae-compare flags
# Defaults: the shipped model (examples/models/tiny-gpt2-docs), layer 3.
# On DistilGPT-2, as the seed's experiment:
#   make -f pipelines/compare.mk MODEL=distilgpt2 LAYER=5 CORPUS=FILE|DIR
#
# Targets: compare (default: the stream, the summary and the page), acts,
# paths. Outputs: $(ACTS)/sweep/compare-SIZES/{compare.tsz,summary.json,
# report.html}.

HERE      := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
MODEL     ?= $(abspath $(HERE)/../examples/models/tiny-gpt2-docs)
LAYER     ?= 3
SIZES     ?= 8x 32x 128x
ARCH      ?= topk
K         ?= 32
L1        ?= 5
TOKENS    ?= 12K
RUNS      ?= runs
CORPUS_BYTES ?= 1500000
COMPARE_ROWS ?= 4096
TOPK_RECORDS ?= 16
RECON_RECORDS ?= 1
COMPARE_FLAGS ?=
# smaller collections than experiment.mk's: 128x has 131,072 features
TOPK_K    ?= 10
WINDOW    ?= 32
FIT_FLAGS ?= --batch 512 --warmup 5 --val-rows 2048
EVAL_EVERY ?= 16

ifndef COMPARE_INNER
# Outer make: the corpus must exist before experiment.mk lists its files.
.DEFAULT_GOAL := compare
CORPUS_STAMP := $(if $(CORPUS),,$(RUNS)/corpus.stamp)
.PHONY: compare acts paths
compare acts paths: $(CORPUS_STAMP)
	@$(MAKE) --no-print-directory -f $(HERE)/compare.mk COMPARE_INNER=1 CORPUS=$(or $(CORPUS),$(RUNS)/corpus) $@
$(RUNS)/corpus.stamp:
	@mkdir -p $(RUNS)
	sh $(HERE)/demo-corpus.sh $(RUNS)/corpus $(CORPUS_BYTES)
	@touch $@
else
SWEEP := $(foreach s,$(SIZES),$(ARCH)/$(s)/$(if $(filter relu,$(ARCH)),$(L1),$(K)))
include $(HERE)/experiment.mk

# Each size its own seed (SEED plus its number: 8x is seeded 8): sae-fit draws W_dec
# row by row from the seed, so with one seed a larger dictionary starts as
# the smaller one plus new rows, and a short fit keeps them as "matches".
fit_flags = --arch $(word 1,$(1)) --dict $(word 2,$(1)) $(if $(filter relu,$(word 1,$(1))),--l1,--k) $(word 3,$(1)) \
	--log-every $(LOG_EVERY) --eval-every $(EVAL_EVERY) $(FIT_FLAGS) --seed $(shell echo $$(( $(SEED) + $(patsubst %x,%,$(word 2,$(1))) )))

space := $(subst ,, )
CMP := $(ACTS)/sweep/compare-$(subst $(space),-,$(strip $(SIZES)))-$(ARCH)-t$(TOKENS)
$(eval $(call params_rule,$(CMP)/compare.params,rows=$(COMPARE_ROWS) $(COMPARE_FLAGS)))

# topk-ctx and explain-gpt4 on the first TOPK_RECORDS records of the held-out
# shard (experiment.mk's topk.tsz takes every shard: hours at 128x here)
define CMP_RULES
$(1)/ctopk.tsz: $(ACTS)/ctx.$(EVAL_ID).tsz $(1)/sae.tsz $(1)/topk.params
	$$(step_begin)$(BIN)tsz head -n $(TOPK_RECORDS) $$< | $(BIN)sae-encode --sae $(1)/sae.tsz | \
		$(BIN)topk-ctx --model $(MODEL_ARG) -k $(TOPK_K) --window $(WINDOW) --random $(RANDOM) $(TOPK_FLAGS) -o $$@ \
	$$(call step_end,TOPK,$(notdir $(1)): $(TOPK_RECORDS) records of shard $(EVAL_ID): $$(call howmuch,features,$$@))
$(1)/cexpl.tsz: $(1)/ctopk.tsz $(1)/explain.params
	$$(step_begin){ $(BIN)explain-gpt4 --backend $(EXPLAINER) $(EXPLAIN_FLAGS) $$< >$$@.tmp $(if $(filter 1,$(EXPLAIN_STRICT)),,|| test $$$$? = 3); } && mv $$@.tmp $$@ \
	$$(call step_end,EXPLAIN,$(notdir $(1)) ($(EXPLAINER)): $$(call howmuch,records,$$@))
endef
$(foreach d,$(SWEEP_DIRS),$(eval $(call CMP_RULES,$(d))))

$(CMP)/compare.tsz $(CMP)/summary.json &: $(foreach d,$(SWEEP_DIRS),$(d)/sae.tsz $(d)/ctopk.tsz $(d)/cexpl.tsz $(d)/recon.tsz) \
		$(EVAL_ROWS) $(CMP)/compare.params
	$(step_begin)$(BIN)sae-compare --acts $(EVAL_ROWS) --rows $(COMPARE_ROWS) \
		$(foreach d,$(SWEEP_DIRS),-F $(d)/ctopk.tsz -e $(d)/cexpl.tsz -r $(d)/recon.tsz) $(COMPARE_FLAGS) \
		--summary $(CMP)/summary.json -o $(CMP)/compare.tsz $(SWEEP_DIRS:%=%/sae.tsz) \
	$(call step_end,COMPARE,$(SIZES): $(call howmuch,bytes,$(CMP)/compare.tsz))

$(CMP)/report.html: $(CMP)/compare.tsz
	$(step_begin)$(BIN)sae-report --compare $< -t "saepipe: $(MODEL_NAME) $(HOOK) $(SIZES)" -o $@ \
	$(call step_end,REPORT,compare: $(call howmuch,bytes,$@))

.PHONY: compare
compare: $(CMP)/report.html
	@echo "summary: $(abspath $(CMP)/summary.json)"; echo "report: $(abspath $<)"
endif
