# quiet.mk: what the pipelines print, as the Linux kernel's and git's builds
# do. By default each step prints one short line when it is done: what it
# was, how much it made, how long it took,
#     "  FIT     sae topk 4x k=32: 410K tokens, FVU 0.123  41 s"
# and V=1 prints the full command lines instead. A step that fails still
# shows its own error messages and make's line naming the target.
#
# A recipe line of a step:
#     $(step_begin)COMMAND$(call step_end,TAG,WHAT)
# COMMAND is one pipeline, as it would be written without quiet.mk; WHAT is
# expanded by the shell after COMMAND has run, so $$(...) in it may look at
# what COMMAND wrote (howmuch.sh). Inside a rule template expanded by
# $(eval $(call ...)), write $$(step_begin) and $$(call step_end,...).
# Lines that are no step (mkdir, touch) start with $(Q); $(Q_STDOUT) after a
# command drops what it prints on stdout (model-fetch's path) unless V=1.

V ?= 0
QUIET_HERE := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
# $(call howmuch,KIND,FILE...): the shell words that describe a step's output
howmuch = $$(sh $(QUIET_HERE)/howmuch.sh '$(BIN)' $(1) $(2))
# $(call plural,N,WORD): "1 file", "4 files"
plural = $(1) $(2)$(if $(filter-out 1,$(1)),s)

ifeq ($(V),1)
Q :=
Q_STDOUT :=
step_begin :=
step_end :=
else
Q := @
Q_STDOUT := >/dev/null
step_begin = @t0=$$(date +%s%N);
# the step's own exit status first (a makefile without -e in .SHELLFLAGS,
# demo.mk, would otherwise take printf's); then tenths of a second since
# t0: "0.4 s", "41 s"
step_end = ; s=$$?; [ $$s = 0 ] || exit $$s; t=$$(( ($$(date +%s%N) - t0) / 100000000 )); \
	if [ $$t -lt 100 ]; then t="$$((t / 10)).$$((t % 10))"; else t=$$((t / 10)); fi; \
	printf '  %-7s %s  %s s\n' '$(1)' "$(2)" "$$t"
endif
