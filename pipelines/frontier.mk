# frontier.mk: the sparsity-fidelity frontier. Every architecture of
# sae-fit at several L0 targets, one dictionary size, the same token budget,
# trained from the activations of one forward pass, scored by recon-score
# on held-out text; a table and a plot of FVU and KL against L0.
#
#   make -f pipelines/frontier.mk [VAR=value...] [TARGET]
#   make frontier                   (the top Makefile builds, then runs this)
#
# The data steps are experiment.mk's (included: tokens, shards, one forward
# + tap per shard into the activation store; the last shard is held out).
# Every fit has the same recipe (FIT_FLAGS) and budget (TOKENS rows). Then:
#  1. one read of the store (fit-sweep.sh: cat of the training shards tee'd
#     into one sae-fit each) trains every point of the archs with a k
#     (topk, batchtopk, ...: the target L0 is k) and, for the archs whose
#     sparsity is a coefficient (relu's --l1), pilot fits at a grid of
#     coefficients (COEFS_<arch>), at the same budget and recipe;
#  2. calibration: for each target L0, the coefficient is interpolated
#     log-log between the two pilots whose validation L0 brackets it
#     (extrapolated from the end pair outside the grid, at most 4x beyond
#     it); frontier-calib.sh writes calib.tsv;
#  3. a second read of the store trains the calibrated points (experiment.mk's
#     sweep); their L0 lands near the target, and the table gives the L0
#     measured;
#  4. recon-score of each point on the first RECON_RECORDS records of the
#     held-out shard (CE score against zero and mean ablation, KL, FVU, MSE,
#     L0, dead and dense fractions), gathered into frontier.tsv by
#     frontier-table.sh, drawn by sae-frontier into frontier.svg.
#
# Variables (defaults below; experiment.mk's apply too, e.g. CTX, SHARDS):
#   MODEL, LAYER  the model and the layer whose MLP output (hook_post) is
#                 learned [the shipped tiny-gpt2-docs, its last layer 3]
#   CORPUS        text to read [FRONTIER_DIR/corpus: CORPUS_BYTES of local
#                 documentation or a public dataset, by demo-corpus.sh]
#   ARCHS         architectures [those of relu topk batchtopk jumprelu gated
#                 matryoshka that `sae-fit --help` lists]
#   L0S           target L0s;  DICT  dictionary size [8x]
#   TOKENS        rows each fit trains on;  FIT_BATCH  rows a step
#   DEAD_TOKENS   rows without firing after which a latent is dead (AuxK)
#   COEFS_<arch>  the pilot grid of a coefficient arch;  KNOB_<arch>  the
#                 sae-fit flag (without --) that sets its sparsity
#   FIT_LR        the learning rate of every fit [4e-3]
#   ARCH_FLAGS_<arch>  sae-fit flags of that arch only [jumprelu:
#                 --threshold-lr 10 --threshold-init 0.01]
#   RECON_RECORDS held-out records (TOK_ROWS windows each) recon-score reads
#   FRONTIER_DIR  where everything goes [frontier]
#
# Targets: frontier (default: the table and the plot, their paths printed),
# calib, frontier-paths, frontier-env (for bench/frontier.sh).
#
# Measured: README "The frontier" (every arch at TOKENS=20K on a loaded
# machine; the default 50K run is an estimate).

HERE       := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
TOP        := $(abspath $(HERE)/..)
BIN        ?= $(TOP)/bin/
FRONTIER_DIR ?= frontier
MODEL      ?= $(TOP)/examples/models/tiny-gpt2-docs
LAYER      ?= 3
CORPUS_BYTES ?= 1500000
CORPUS     ?= $(FRONTIER_DIR)/corpus
RUNS       ?= $(FRONTIER_DIR)/runs
DICT       ?= 8x
L0S        ?= 8 16 32 64 128
TOKENS     ?= 50K
FIT_BATCH  ?= 256
DEAD_TOKENS ?= 20K
RECON_RECORDS ?= 1
# the recipe every fit shares (the last weights: a fixed length for all)
FIT_LR     ?= 4e-3
FIT_FLAGS  ?= --batch $(FIT_BATCH) --lr $(FIT_LR) --dead-tokens $(DEAD_TOKENS) --keep-best last --val-rows 8192
EVAL_EVERY ?= 1000

# archs: those sae-fit knows (its --help's --arch line), in this order
comma      := ,
empty      :=
space      := $(empty) $(empty)
ARCHS_KNOWN := relu topk batchtopk jumprelu gated matryoshka
ARCHS_FIT  := $(subst $(comma), ,$(shell $(BIN)sae-fit --help 2>/dev/null | sed -n 's/^ *--arch A *//p'))
ARCHS      ?= $(filter $(ARCHS_FIT),$(ARCHS_KNOWN))
# the knob of each arch (experiment.mk: k unless KNOB_<arch> says otherwise;
# sae-fit's --l1 is the sparsity coefficient of relu, gated and jumprelu),
# and the pilot grids, which bracket L0 8..128 on the shipped model at
# TOKENS=50K with this recipe (README "The frontier": relu 0.03..0.5 gave
# validation L0 261..6.7, gated 0.008..0.5 285..0.02, jumprelu 1e-5..0.1
# 164..5.8 at its default bandwidth 0.05, 164..10.5 at 0.001). The
# recipe's lr, 10x sae-fit's default, is what trains relu and gated at all
# in 195 steps (at 4e-4 they stayed near FVU 1 below L0 ~200). jumprelu's
# log threshold moves about lr a step, so at 195 steps (lr 4e-4, start
# 0.1 s) its L0 barely answered its coefficient (9.5-10 over 0.003..3); it learns 10x faster
# here and starts lower (0.01 s: from 0.1 s ~96% of the latents never
# fired).
KNOB_relu  ?= l1
KNOB_gated ?= l1
KNOB_jumprelu ?= l1
ARCH_FLAGS_jumprelu ?= --threshold-lr 10 --threshold-init 0.01
COEFS_relu ?= 0.03 0.06 0.125 0.25 0.5
COEFS_gated ?= 0.008 0.03 0.125 0.5
COEFS_jumprelu ?= 0.00001 0.0001 0.001 0.01 0.1

# Where the frontier goes, and its points as experiment.mk's SWEEP: defined
# before experiment.mk, which expands them (its names, ACTS, come first there)
FRONT      = $(ACTS)/frontier-$(DICT)-t$(TOKENS)
SWEEP_DIR  = $(FRONT)/fits
PILOT_DIR  = $(FRONT)/pilots
CALIB      = $(FRONT)/calib.tsv
TABLE      = $(FRONT)/frontier.tsv
PLOT       = $(FRONT)/frontier.svg
COEF_ARCHS = $(strip $(foreach a,$(ARCHS),$(if $(filter k,$(call knob,$(a))),,$(a))))
# calib.tsv's lines as arch/target/value words, read once
calib_words = $(eval calib_words := $(if $(wildcard $(CALIB)),$(shell awk '{print $$1 "/" $$2 "/" $$3}' $(CALIB))))$(calib_words)
# the knob's value for target L0 $(2) of arch $(1): k archs take the target
point_value = $(if $(filter $(1),$(COEF_ARCHS)),$(word 3,$(subst /, ,$(filter $(1)/$(2)/%,$(calib_words)))),$(2))
# arch/target points, those of coefficient archs once calibrated
POINTS     = $(foreach a,$(ARCHS),$(foreach l,$(L0S),$(if $(call point_value,$(a),$(l)),$(a)/$(l))))
point_fit  = $(word 1,$(1)) $(DICT) $(call point_value,$(word 1,$(1)),$(word 2,$(1)))
# the calibrated points (sorted: two targets that calibrate to one value are
# one fit); the k archs' are fitted beside the pilots (K_FITS)
SWEEP      = $(sort $(foreach p,$(filter $(addsuffix /%,$(COEF_ARCHS)),$(POINTS)),$(subst $(space),/,$(call point_fit,$(subst /, ,$(p))))))

include $(HERE)/experiment.mk
.DEFAULT_GOAL := frontier

# ---- the corpus: chosen as the demo's when none is given ----------------------------
CORPUS_STAMP := $(if $(filter $(FRONTIER_DIR)/corpus,$(CORPUS)),$(FRONTIER_DIR)/corpus.stamp)
$(FRONTIER_DIR)/corpus.stamp:
	@mkdir -p $(@D)
	$(step_begin)sh $(PIPELINES)demo-corpus.sh $(CORPUS) $(CORPUS_BYTES) \
	$(call step_end,CORPUS,$$(ls $(CORPUS) | wc -l) documents in $(call howmuch,bytes,$(CORPUS)))
	$(Q)touch $@

# ---- 1. one read of the store into the pilots and the k archs' points --------------
pilot_dir = $(PILOT_DIR)/$(1)-$(DICT)-$(call knob,$(1))$(2)
PILOTS     := $(foreach a,$(COEF_ARCHS),$(foreach c,$(COEFS_$(a)),$(a)/$(c)))
PILOT_DIRS := $(foreach p,$(PILOTS),$(call pilot_dir,$(word 1,$(subst /, ,$(p))),$(word 2,$(subst /, ,$(p)))))
pilot_flags = --arch $(1) --dict $(DICT) --$(call knob,$(1)) $(2) --log-every $(LOG_EVERY) --eval-every $(EVAL_EVERY) $(FIT_FLAGS) $(ARCH_FLAGS_$(1))
K_FITS     := $(foreach a,$(filter-out $(COEF_ARCHS),$(ARCHS)),$(foreach l,$(L0S),$(a)/$(DICT)/$(l)))
K_DIRS     := $(foreach s,$(K_FITS),$(SWEEP_DIR)/$(call fit_id,$(subst /, ,$(s))))
$(foreach d,$(K_DIRS),$(eval $(call SAE_RULES,$(d))))

$(eval $(call params_rule,$(FRONT)/first.params,$(LOG_EVERY) $(EVAL_EVERY) $(FIT_FLAGS) $(ARCH_FLAGS_ALL)))
# (the second make, frontier-points, takes the stamp as it is (-o): GNU make
# 4.3 remade it there after the first had, for no reason its --debug showed)
$(FRONT)/first.stamp: $(TRAIN_ROWS) $(EVAL_ROWS) $(FRONT)/first.params
	$(step_begin)cat $(TRAIN_ROWS) | sh $(PIPELINES)fit-sweep.sh '$(BIN)' $(EVAL_ROWS) $(TOKENS) \
		$(foreach p,$(PILOTS),'$(call pilot_flags,$(word 1,$(subst /, ,$(p))),$(word 2,$(subst /, ,$(p))))' $(call pilot_dir,$(word 1,$(subst /, ,$(p))),$(word 2,$(subst /, ,$(p))))) \
		$(foreach s,$(K_FITS),'$(call fit_flags,$(subst /, ,$(s)))' $(SWEEP_DIR)/$(call fit_id,$(subst /, ,$(s)))) \
	$(call step_end,FIT,$(if $(K_FITS),$(words $(K_FITS)) points of $(filter-out $(COEF_ARCHS),$(ARCHS))$(if $(PILOTS), and ))$(if $(PILOTS),$(words $(PILOTS)) calibration pilots of $(COEF_ARCHS)))
	$(Q)touch $@
$(PILOT_DIRS:%=%/sae.tsz) $(K_DIRS:%=%/sae.tsz): $(FRONT)/first.stamp ;

# ---- 2. calibration of the coefficient archs from their pilots --------------------
$(eval $(call params_rule,$(FRONT)/calib.params,$(L0S) $(foreach a,$(COEF_ARCHS),$(a):$(COEFS_$(a)))))
$(CALIB): $(PILOT_DIRS:%=%/sae.tsz) $(FRONT)/calib.params
	$(step_begin)sh $(PIPELINES)frontier-calib.sh '$(BIN)' '$(L0S)' $@ \
		$(foreach p,$(PILOTS),$(subst /, ,$(p)) $(call pilot_dir,$(word 1,$(subst /, ,$(p))),$(word 2,$(subst /, ,$(p))))/sae.tsz) \
	$(call step_end,CALIB,$$(cut -f 1-3 $@ | tr '\t\n' ' ;' | sed 's/;$$//; s/;/; /g'))

# ---- 3. the calibrated points are experiment.mk's sweep (SWEEP, SWEEP_DIR), a
# second read of the store; 4. every point scored, the table and the plot ---------
# words "arch target knob value DIR" for frontier-table.sh
TABLE_ARGS = $(foreach p,$(POINTS),$(subst /, ,$(p)) $(call knob,$(word 1,$(subst /, ,$(p)))) \
	$(call point_value,$(word 1,$(subst /, ,$(p))),$(word 2,$(subst /, ,$(p)))) \
	$(SWEEP_DIR)/$(call fit_id,$(call point_fit,$(subst /, ,$(p)))))

$(TABLE): $(SWEEP_DIRS:%=%/recon.tsz) $(K_DIRS:%=%/recon.tsz)
	$(step_begin)sh $(PIPELINES)frontier-table.sh '$(BIN)' $@ $(TABLE_ARGS) \
	$(call step_end,TABLE,$(words $(POINTS)) points of $(words $(ARCHS)) archs)
$(PLOT): $(TABLE)
	$(step_begin)$(BIN)sae-frontier -t "$(MODEL_NAME) $(HOOK)$(comma) $(DICT)$(comma) $(TOKENS) tokens" -o $@ $< \
	$(call step_end,PLOT,FVU and KL against L0: $(call howmuch,bytes,$@))

# ---- named steps: the points are known once calib.tsv is, so a second make ---------
.PHONY: frontier calib frontier-points frontier-paths frontier-env
calib: $(CALIB)
frontier: $(CORPUS_STAMP)
	$(if $(COEF_ARCHS),@$(MAKE) --no-print-directory -f $(HERE)/frontier.mk calib)
	@$(MAKE) --no-print-directory -f $(HERE)/frontier.mk $(if $(COEF_ARCHS),-o $(FRONT)/first.stamp) frontier-points
frontier-points: $(PLOT)
	@echo "table: $(abspath $(TABLE))"; echo "plot:  $(abspath $(PLOT))"
frontier-paths:
	@echo "front:  $(FRONT)"; echo "archs:  $(ARCHS)"; echo "points: $(POINTS)"
# for bench/frontier.sh: where things are, as shell assignments
frontier-env:
	@echo "FRONT='$(FRONT)' TABLE='$(TABLE)' TRAIN_ROWS='$(TRAIN_ROWS)' EVAL_TOK='$(EVAL_TOK)'"
	@echo "RECON_RECORDS='$(RECON_RECORDS)' MODEL_ARG='$(MODEL_ARG)' HOOK='$(HOOK)' TOKENS='$(TOKENS)'"
	@echo "FIT_BATCH='$(FIT_BATCH)' FIT_LR='$(FIT_LR)' DEAD_TOKENS='$(DEAD_TOKENS)' DICT='$(DICT)' FIT_FLAGS='$(FIT_FLAGS)'"
