# experiment.mk: the seed experiment as make targets, step by step.
#
#   make -f pipelines/experiment.mk CORPUS=FILE|DIR [VAR=value...] [TARGET]
#
# fetch model -> tokenize -> shard -> forward + tap (per shard, in parallel)
# -> fit the SAE -> score reconstruction -> encode + top-k contexts (per
# shard) -> merge -> explain -> report. Every step is a file target that its
# stage writes atomically (temporary name, rename), so `make` resumes where
# it stopped; parameters are part of the directory names or of *.params
# stamp files, so a changed parameter reruns exactly what depends on it;
# `make -j N` runs independent shards at once.
#
# Variables (defaults below):
#   MODEL      model directory (Hugging Face layout) or hub id (model-fetch)
#   CORPUS     text file, JSON Lines file (*.jsonl, key "text") or directory
#              of text files (one document each)
#   LAYER      layer whose MLP neurons are dictionary-learned; HOOK follows
#   HOOK       TransformerLens hook name [blocks.$(LAYER).mlp.hook_post]
#   DICT       dictionary size: 8x, 32x, 128x or a number of features
#   ARCH       relu, topk or batchtopk;  K  top-k;  L1  L1 coefficient (relu)
#   KNOB_<arch>  the sae-fit flag that sets the sparsity of <arch>, which a
#              sweep word's third part gives [l1 for relu, k otherwise]
#   FIT_FLAGS  sae-fit flags of every fit;  ARCH_FLAGS_<arch>  more flags
#              for <arch>'s fits only (after FIT_FLAGS)
#   TOKENS     training token budget of sae-fit (when the store holds fewer
#              rows, the fit's schedule runs over those; a sweep's does not)
#   CTX        tokens per window (gpt2-tok --ctx)
#   EXPLAINER  openai or baseline [openai when OPENAI_API_KEY is set]
#   SHARDS     token shards; the last one is held out (validation, scoring)
#   RECON_RECORDS  score on the first N records (TOK_ROWS windows each) of
#              the held-out shard only [all of it]: recon-score runs four
#              forwards with the unembedding, the costliest step
#   HOSTS      comma-separated ssh logins (GNU parallel -S syntax, e.g.
#              4/alice@gpu1,bob@gpu2, ':' for this machine): per-shard steps
#              run there, round-robin, inputs transferred and outputs
#              returned by GNU parallel; the hosts need saepipe at the same
#              path (BIN, PIPELINES), the model (MODEL) at the same path, and
#              rsync; keep RUNS relative (the default) so that paths map into
#              the remote work directory. SSH="ssh -F CONFIG" sets the ssh
#              command.
#   SWEEP      dictionaries trained from ONE read of the activation store, as
#              ARCH/DICT/L1-or-K words: "relu/32x/5 relu/128x/5 topk/32x/32"
#   SWEEP_DIR  where the sweep's dictionaries go [$(ACTS)/sweep]
#
#   V          1: print the full command lines instead of one short line a
#              step (quiet.mk)
#
# Targets: report (default), tokens, acts, fit, recon, topk, explain, sweep
# (fits, scores and compares the SWEEP dictionaries in one report), paths
# (prints where things go).

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
.DELETE_ON_ERROR:
.SECONDARY:
.SUFFIXES:
.DEFAULT_GOAL := report

HERE      := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
BIN       ?= $(abspath $(HERE)/../bin)/
PIPELINES ?= $(HERE)/

MODEL     ?= distilgpt2
CORPUS    ?=
LAYER     ?= 5
HOOK      ?= blocks.$(LAYER).mlp.hook_post
DICT      ?= 32x
ARCH      ?= relu
K         ?= 32
L1        ?= 5
TOKENS    ?= 2M
CTX       ?= 128
EXPLAINER ?= $(if $(OPENAI_API_KEY),openai,baseline)
SHARDS    ?= 4
HOSTS     ?=
SWEEP     ?= relu/32x/$(L1) relu/128x/$(L1)

RUNS      ?= runs
DTYPE     ?= bf16
BATCH     ?= 8
SHUFFLE   ?= 65536
SEED      ?= 0
FIT_FLAGS ?=
LOG_EVERY ?= 10
EVAL_EVERY ?= 50
TOPK_K    ?= 20
WINDOW    ?= 64
RANDOM    ?= 10
TOPK_FLAGS ?=
RECON_RECORDS ?=
TOK_ROWS  ?= 64
EXPLAIN_FEATURES ?=
# (a range A-B, split over SHARDS parts like the rest; empty: every feature)
EXPLAIN_FLAGS ?=
EXPLAIN_STRICT ?= 0
REPORT_FLAGS ?=
SSH       ?=
REMOTE_WORKDIR ?= ...

include $(HERE)/quiet.mk

# ---- names: parameters are part of the paths --------------------------------
strip_slash = $(patsubst %/,%,$(1))
MODEL_IS_DIR := $(if $(wildcard $(MODEL)/config.json),1,)
MODEL_ARG  := $(if $(MODEL_IS_DIR),$(abspath $(MODEL)),$(MODEL))
MODEL_NAME := $(notdir $(call strip_slash,$(MODEL)))
CORPUS_IS_DIR := $(if $(wildcard $(CORPUS)/.),1,)
CORPUS_FILES := $(if $(CORPUS_IS_DIR),$(sort $(wildcard $(call strip_slash,$(CORPUS))/*)),$(CORPUS))
CORPUS_NAME := $(notdir $(basename $(call strip_slash,$(CORPUS))))
TOK_FORMAT := $(if $(filter %.jsonl,$(CORPUS)),--format jsonl --key text,)

DATA  := $(RUNS)/$(MODEL_NAME)/$(CORPUS_NAME)-ctx$(CTX)-s$(SHARDS)
ACTS  := $(DATA)/$(HOOK)-$(DTYPE)
# ARCH/DICT/PARAM -> directory name of a fit; PARAM is the value of the
# arch's knob (KNOB_<arch>)
KNOB_relu ?= l1
knob = $(or $(KNOB_$(1)),k)
fit_id = $(word 1,$(1))-$(word 2,$(1))-$(call knob,$(word 1,$(1)))$(word 3,$(1))-t$(TOKENS)
# ARCH_FLAGS_<arch>: flags of that arch's fits only, after FIT_FLAGS
fit_flags = --arch $(word 1,$(1)) --dict $(word 2,$(1)) --$(call knob,$(word 1,$(1))) $(word 3,$(1)) \
	--log-every $(LOG_EVERY) --eval-every $(EVAL_EVERY) $(FIT_FLAGS) $(ARCH_FLAGS_$(word 1,$(1)))
ARCH_FLAGS_ALL = $(foreach v,$(filter-out ARCH_FLAGS_ALL,$(filter ARCH_FLAGS_%,$(sort $(.VARIABLES)))),$(v):$($(v)))
FIT   := $(ARCH) $(DICT) $(if $(filter relu,$(ARCH)),$(L1),$(K))
SAE   := $(ACTS)/$(call fit_id,$(FIT))

SHARD_IDS  := $(shell seq -f %02g 0 $$(( $(SHARDS) - 1 )))
EVAL_ID    := $(lastword $(SHARD_IDS))
TRAIN_IDS  := $(or $(filter-out $(EVAL_ID),$(SHARD_IDS)),$(EVAL_ID))
TRAIN_ROWS := $(TRAIN_IDS:%=$(ACTS)/rows.%.tsz)
EVAL_ROWS  := $(ACTS)/rows.$(EVAL_ID).tsz
EVAL_TOK   := $(DATA)/tok.$(EVAL_ID).tsz

SWEEP_DIR  ?= $(ACTS)/sweep
SWEEP_DIRS := $(foreach s,$(SWEEP),$(SWEEP_DIR)/$(call fit_id,$(subst /, ,$(s))))

# ---- distribution ------------------------------------------------------------
# $(call dist,SHARD,INPUTS,OUTPUTS,COMMAND): run COMMAND here, or with HOSTS
# on host number SHARD mod n through GNU parallel, which copies INPUTS (paths
# relative to here) into a fresh remote work directory, runs COMMAND there
# ({1}, {2}... are the INPUTS), brings OUTPUTS back and cleans up.
comma := ,
HOSTLIST := $(subst $(comma), ,$(HOSTS))
host_of = $(word $(shell echo $$(( 10#$(1) % $(words $(HOSTLIST)) + 1 ))),$(HOSTLIST))
ifeq ($(strip $(HOSTS)),)
# locally {1}, {2}, {3} are the inputs themselves
dist = $(subst {3},$(word 3,$(2)),$(subst {2},$(word 2,$(2)),$(subst {1},$(word 1,$(2)),$(4))))
else
dist = parallel --will-cite --halt now,fail=1 $(if $(SSH),--ssh '$(SSH)') -S '$(call host_of,$(1))' \
	--workdir $(REMOTE_WORKDIR) --env OPENBLAS_NUM_THREADS \
	$(foreach i,$(shell seq $(words $(2))),--transferfile {$(i)}) \
	$(foreach o,$(3),--return $(o)) --cleanup 'mkdir -p $(sort $(dir $(3))) && $(4)' $(foreach f,$(2),::: $(f))
endif

# ---- parameter stamps: rewritten only when their content changes ---------------
# $(call params,FILE,TEXT)
define params_rule
$(1): FORCE
	@mkdir -p $$(@D); echo '$(2)' | cmp -s - $$@ || echo '$(2)' >$$@
endef
.PHONY: FORCE
FORCE:

# ---- model and tokens -----------------------------------------------------------
MODEL_STAMP := $(if $(MODEL_IS_DIR),,$(RUNS)/$(MODEL_NAME)/model.stamp)

$(RUNS)/$(MODEL_NAME)/model.stamp:
	@mkdir -p $(@D)
	$(step_begin)$(BIN)model-fetch $(MODEL) $(Q_STDOUT)$(call step_end,FETCH,$(MODEL))
	$(Q)touch $@

$(eval $(call params_rule,$(DATA)/tok.params,model=$(MODEL_ARG) rows=$(TOK_ROWS) $(TOK_FORMAT)))

$(DATA)/tokens.tsz: $(CORPUS_FILES) $(MODEL_STAMP) $(DATA)/tok.params
	@test -n "$(CORPUS)" || { echo "experiment.mk: set CORPUS=FILE|DIR (text, .jsonl, or a directory of text files)" >&2; exit 2; }
	@mkdir -p $(@D)
	$(step_begin)$(BIN)gpt2-tok --model $(MODEL_ARG) --ctx $(CTX) --drop-tail --rows $(TOK_ROWS) $(TOK_FORMAT) $(CORPUS_FILES) -o $@ \
	$(call step_end,TOK,$(call plural,$(words $(CORPUS_FILES)),file) to $(call howmuch,tokens,$@))

# tsz split writes tok.00.tsz ... balanced by rows; cat of them is tokens.tsz
$(DATA)/shards.stamp: $(DATA)/tokens.tsz
	$(step_begin)$(BIN)tsz split -n $(SHARDS) $(DATA)/tok $<$(call step_end,SPLIT,$(SHARDS) shards (the last one held out))
	$(Q)touch $@
$(SHARD_IDS:%=$(DATA)/tok.%.tsz): $(DATA)/shards.stamp ;

$(eval $(call params_rule,$(DATA)/recon.params,records=$(RECON_RECORDS)))

# ---- activation store: one forward per shard, tapped twice ----------------------
$(eval $(call params_rule,$(ACTS)/tap.params,model=$(MODEL_ARG) batch=$(BATCH) shuffle=$(SHUFFLE) seed=$(SEED)))

$(ACTS)/rows.%.tsz $(ACTS)/ctx.%.tsz: $(DATA)/tok.%.tsz $(ACTS)/tap.params
	@mkdir -p $(@D)
	$(step_begin)$(call dist,$*,$<,$(ACTS)/rows.$*.tsz $(ACTS)/ctx.$*.tsz,sh $(PIPELINES)tap-shard.sh $(BIN) $(MODEL_ARG) $(HOOK) $(DTYPE) $(BATCH) $(SHUFFLE) $(shell echo $$(( $(SEED) + 10#$* ))) {1} $(ACTS)/rows.$*.tsz $(ACTS)/ctx.$*.tsz) \
	$(call step_end,FWD+TAP,shard $*: $(call howmuch,tokens,$<) to $(DTYPE) $(HOOK)$(comma) $(call howmuch,bytes,$(ACTS)/rows.$*.tsz $(ACTS)/ctx.$*.tsz))

# ---- per-dictionary steps (the single fit and every sweep member) ---------------
define SAE_RULES
$(eval $(call params_rule,$(1)/topk.params,model=$(MODEL_ARG) k=$(TOPK_K) window=$(WINDOW) random=$(RANDOM) logits=sae $(TOPK_FLAGS)))
$(eval $(call params_rule,$(1)/explain.params,$(EXPLAINER) features=$(EXPLAIN_FEATURES) $(EXPLAIN_FLAGS)))

$(1)/recon.tsz: $(1)/sae.tsz $(EVAL_TOK) $(DATA)/recon.params
	$$(step_begin)$(if $(RECON_RECORDS),$(BIN)tsz head -n $(RECON_RECORDS) $(EVAL_TOK) | )$(BIN)recon-score --model $(MODEL_ARG) --sae $(1)/sae.tsz $(if $(RECON_RECORDS),-,$(EVAL_TOK)) -o $$@ \
	$$(call step_end,RECON,$(notdir $(1)) on held-out shard $(EVAL_ID)$(if $(RECON_RECORDS), ($(call plural,$(RECON_RECORDS),record))): $$(call howmuch,recon,$$@))

$(SHARD_IDS:%=$(1)/topk.%.tsz): $(1)/topk.%.tsz: $(ACTS)/ctx.%.tsz $(1)/sae.tsz $(1)/topk.params
	$$(step_begin)$$(call dist,$$*,$$< $(1)/sae.tsz,$$@,$(BIN)sae-encode --sae {2} {1} | $(BIN)topk-ctx --model $$(MODEL_ARG) --sae {2} -k $$(TOPK_K) --window $$(WINDOW) --random $$(RANDOM) $$(TOPK_FLAGS) -o $$@) \
	$$(call step_end,TOPK,$(notdir $(1)) shard $$*: encode and collect top-k contexts)

$(1)/topk.tsz: $(SHARD_IDS:%=$(1)/topk.%.tsz)
	$$(step_begin)$(BIN)topk-ctx --merge $$^ -o $$@$$(call step_end,MERGE,top-k contexts of $(SHARDS) shards: $$(call howmuch,features,$$@))

$(SHARD_IDS:%=$(1)/expl.%.tsz): $(1)/expl.%.tsz: $(1)/topk.tsz $(1)/explain.params
	$$(step_begin)$$(call dist,$$*,$$<,$$@,sh $(PIPELINES)explain-part.sh $(BIN) {1} $$* $(SHARDS) $$(or $$(EXPLAIN_FEATURES),all) $$@ --backend $$(EXPLAINER) $$(EXPLAIN_FLAGS)) $(if $(filter 1,$(EXPLAIN_STRICT)),,|| test $$$$? = 3) \
	$$(call step_end,EXPLAIN,part $$* of $(SHARDS) of the features ($$(EXPLAINER)): $$(call howmuch,records,$$@))

$(1)/expl.tsz: $(SHARD_IDS:%=$(1)/expl.%.tsz)
	$$(step_begin)$(BIN)tsz cat $$^ -o $$@$$(call step_end,CAT,explanations: $$(call howmuch,records,$$@))

# the report as a directory whose features load by page: a 128x dictionary
# of a 3072-wide MLP would make a 1.4 GB single page
$(1)/report/index.html: $(1)/sae.tsz $(1)/recon.tsz $(1)/topk.tsz $(1)/expl.tsz
	$$(step_begin)$(BIN)sae-report -s $(1)/sae.tsz -r $(1)/recon.tsz -l $(1)/train.tsv -F $(1)/topk.tsz \
		-e $(1)/expl.tsz -t "saepipe: $(MODEL_NAME) $(HOOK) $(notdir $(1))" $(REPORT_FLAGS) -D $(1)/report \
	$$(call step_end,REPORT,$(notdir $(1)): $$(call howmuch,bytes,$$@))
endef

$(foreach d,$(SAE) $(SWEEP_DIRS),$(eval $(call SAE_RULES,$(d))))

# ---- fitting -----------------------------------------------------------------------
$(eval $(call params_rule,$(SAE)/fit.params,$(LOG_EVERY) $(EVAL_EVERY) $(FIT_FLAGS) $(ARCH_FLAGS_$(ARCH))))
$(SAE)/sae.tsz: $(TRAIN_ROWS) $(EVAL_ROWS) $(SAE)/fit.params
	$(step_begin)$(BIN)sae-fit $(call fit_flags,$(FIT)) --tokens $(TOKENS) --val $(EVAL_ROWS) \
		--log $(SAE)/train.tsv --checkpoint $(SAE)/ckpt --resume -o $@ $(TRAIN_ROWS) \
	$(call step_end,FIT,$(notdir $(SAE)): $(call howmuch,fit,$@))

# the sweep: one read of the store, tee'd into one sae-fit per member
$(eval $(call params_rule,$(SWEEP_DIR)/fit.params,$(LOG_EVERY) $(EVAL_EVERY) $(FIT_FLAGS) $(ARCH_FLAGS_ALL)))
$(SWEEP_DIRS:%=%/sae.tsz) &: $(TRAIN_ROWS) $(EVAL_ROWS) $(SWEEP_DIR)/fit.params
	$(step_begin)cat $(TRAIN_ROWS) | sh $(PIPELINES)fit-sweep.sh '$(BIN)' $(EVAL_ROWS) $(TOKENS) \
		$(foreach s,$(SWEEP),'$(call fit_flags,$(subst /, ,$(s)))' $(SWEEP_DIR)/$(call fit_id,$(subst /, ,$(s)))) \
	$(call step_end,FIT,sweep of $(words $(SWEEP)) dictionaries: $(SWEEP))

$(SWEEP_DIR)/report.html: $(SWEEP_DIRS:%=%/sae.tsz) $(SWEEP_DIRS:%=%/recon.tsz)
	$(step_begin)$(BIN)sae-report $(foreach d,$(SWEEP_DIRS),-s $(d)/sae.tsz -r $(d)/recon.tsz -l $(notdir $(d))=$(d)/train.tsv) \
		-t "saepipe sweep: $(MODEL_NAME) $(HOOK)" $(REPORT_FLAGS) -o $@$(call step_end,REPORT,sweep: $(call howmuch,bytes,$@))

# ---- named steps -------------------------------------------------------------------
.PHONY: report tokens acts fit recon topk explain sweep paths
tokens: $(SHARD_IDS:%=$(DATA)/tok.%.tsz)
acts: $(SHARD_IDS:%=$(ACTS)/rows.%.tsz) $(SHARD_IDS:%=$(ACTS)/ctx.%.tsz)
fit: $(SAE)/sae.tsz
recon: $(SAE)/recon.tsz
topk: $(SAE)/topk.tsz
explain: $(SAE)/expl.tsz
report: $(SAE)/report/index.html
	@echo "report: $(abspath $<)"
sweep: $(SWEEP_DIR)/report.html
	@echo "sweep report: $(abspath $<)"
paths:
	@echo "data:  $(DATA)"; echo "acts:  $(ACTS)"; echo "sae:   $(SAE)"
	@echo "sweep: $(SWEEP_DIRS)"
