#!/bin/sh
test_description='distribution with GNU parallel: -S : locally, and over ssh to an sshd on loopback that the test starts; shard outputs merge to the single-process result'
. "$(dirname "$0")/test-lib.sh"

SSHD=$(command -v sshd || echo /usr/sbin/sshd)
test -x "$SSHD" && command -v ssh >/dev/null && command -v ssh-keygen >/dev/null && test_set_prereq SSHD
test_have_prereq SSHD || echo "# sshd/ssh not found (apt-get install openssh-server): ssh tests are skipped"
command -v rsync >/dev/null && test_set_prereq RSYNC
test_have_prereq RSYNC || echo "# rsync not found: parallel cannot transfer files; ssh tests are skipped"

# parallel writes its state under $HOME: keep it in the trash directory
HOME=$PWD
export HOME
HOOK=blocks.3.mlp.hook_post
FWD="$SRC_DIR/bin/gpt2-fwd --model $TINY_MODEL_DIR --batch 4 --hook $HOOK"
SSHD_PID=
trap 'test -n "$SSHD_PID" && kill $SSHD_PID 2>/dev/null' EXIT INT TERM

test_expect_success NUMPY,TINY_MODEL 'token windows, in 3 shards' '
	"$PYTHON" -c "
import numpy as np
r = np.random.default_rng(7)
t = r.integers(0, 50257, size=(12, 16)).astype(np.int32); t[:, 0] = 50256
np.save(\"tok.npy\", t)" &&
	tsz from-npy --rows 4 tokens=tok.npy >tokens.tsz &&
	tsz split -n 3 shard tokens.tsz &&
	ls shard.*.tsz >shards && test_line_count = 3 shards &&
	$FWD tokens.tsz -o single.tsz &&
	tsz to-npy --name $HOOK single.npy single.tsz
'

test_expect_success PARALLEL,NUMPY,TINY_MODEL 'parallel -S : runs the stage per shard; cat of the outputs is the single run' '
	mkdir local && cp shard.*.tsz local/ && (
		cd local &&
		timeout 120 parallel --will-cite -j2 -S : --workdir . "$FWD {} -o {.}.acts.tsz" ::: shard.*.tsz &&
		tsz cat shard.00.acts.tsz shard.01.acts.tsz shard.02.acts.tsz -o merged.tsz &&
		tsz to-npy --name $HOOK merged.npy merged.tsz
	) &&
	cmp single.npy local/merged.npy
'

# sshd on a free loopback port, as the current user, keys in the trash directory.
# The loopback "hosts" get this shell's OPENBLAS_* settings (SendEnv and
# AcceptEnv), whatever they are, so that they are the same host as the local
# run: same machine, same OpenBLAS kernel, the case where README
# "Reproducibility" promises the same bytes. (Without them, OpenBLAS on the
# remote side may pick another kernel than an OPENBLAS_CORETYPE set here, as
# another host of a cluster may: the promise there is a tolerance.)
start_sshd () {
	ssh-keygen -q -t ed25519 -N "" -f hostkey &&
	ssh-keygen -q -t ed25519 -N "" -f clientkey &&
	cp clientkey.pub authorized_keys && chmod 600 authorized_keys &&
	if test "$(id -u)" = 0; then mkdir -p /run/sshd; fi &&
	port=$((20000 + $$ % 20000)) && tries=0 &&
	while test $tries -lt 8; do
		cat >sshd_config <<-CFG &&
		Port $port
		ListenAddress 127.0.0.1
		HostKey $PWD/hostkey
		PidFile $PWD/sshd.pid
		AuthorizedKeysFile $PWD/authorized_keys
		PubkeyAuthentication yes
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		UsePAM no
		StrictModes no
		PermitRootLogin prohibit-password
		AllowUsers $(id -un)
		AcceptEnv OPENBLAS_*
		CFG
		"$SSHD" -t -f sshd_config &&
		{ "$SSHD" -D -e -f sshd_config 2>>sshd.log & echo $! >sshd.pid.bg; } &&
		cat >ssh_config <<-CFG &&
		Host loopback loopback2
		  SendEnv OPENBLAS_*
		Host loopback loopback2 bare
		  HostName 127.0.0.1
		  Port $port
		  User $(id -un)
		  IdentityFile $PWD/clientkey
		  IdentitiesOnly yes
		  StrictHostKeyChecking no
		  UserKnownHostsFile $PWD/known_hosts
		  BatchMode yes
		  ConnectTimeout 5
		  LogLevel ERROR
		CFG
		for i in 1 2 3 4 5 6 7 8 9 10; do
			timeout 10 ssh -F ssh_config loopback true 2>ssh.err && return 0
			kill -0 $(cat sshd.pid.bg) 2>/dev/null || break
			sleep 0.3
		done
		kill $(cat sshd.pid.bg) 2>/dev/null
		port=$((port + 1)) tries=$((tries + 1))
	done
	cat sshd.log ssh.err >&2
	return 1
}

test_expect_success SSHD,RSYNC,PARALLEL 'an sshd on loopback accepts our key' '
	start_sshd &&
	timeout 10 ssh -F ssh_config loopback "echo \$HOME; id -un" >who &&
	grep -x "$(id -un)" who
'
SSHD_PID=$(cat sshd.pid.bg 2>/dev/null)
test -n "$SSHD_PID" && test_set_prereq LOOPBACK_SSH

test_expect_success LOOPBACK_SSH,NUMPY,TINY_MODEL 'parallel over ssh: inputs transferred, outputs returned, remote cleaned, merge equals single run' '
	mkdir ssh-run remote && cp shard.*.tsz ssh-run/ && (
		cd ssh-run &&
		timeout 180 parallel --will-cite --ssh "ssh -F $PWD/../ssh_config" -S 1/loopback,1/loopback2 \
			--workdir "$PWD/../remote" --env OPENBLAS_NUM_THREADS \
			--transferfile {} --return {.}.acts.tsz --cleanup \
			"$FWD {} -o {.}.acts.tsz" ::: shard.*.tsz &&
		ls shard.*.acts.tsz >returned &&
		tsz cat shard.00.acts.tsz shard.01.acts.tsz shard.02.acts.tsz -o merged.tsz &&
		tsz to-npy --name $HOOK merged.npy merged.tsz
	) &&
	test_line_count = 3 ssh-run/returned &&
	{ test ! -d remote || { find remote -name "*.tsz" >left && test_line_count = 0 left; }; } &&
	grep -c "Accepted publickey" sshd.log >logins && test $(cat logins) -ge 4 &&
	cmp single.npy ssh-run/merged.npy
'

# "bare" gets none of this shell's OPENBLAS_* settings: its OpenBLAS picks
# its kernel by itself, as another host of a cluster does (where this shell
# sets OPENBLAS_CORETYPE, as this project's CI machines may, a kernel other
# than the local one). The merge then equals the single run within the
# tolerance README "Reproducibility" states for activations.
test_expect_success LOOPBACK_SSH,NUMPY,TINY_MODEL 'a host with its own OpenBLAS kernel: the merge equals the single run within the tolerance' '
	mkdir bare-run && cp shard.*.tsz bare-run/ && (
		cd bare-run &&
		timeout 180 parallel --will-cite --ssh "ssh -F $PWD/../ssh_config" -S 1/bare \
			--workdir "$PWD/../remote" --transferfile {} --return {.}.acts.tsz --cleanup \
			"$FWD {} -o {.}.acts.tsz" ::: shard.*.tsz &&
		tsz cat shard.00.acts.tsz shard.01.acts.tsz shard.02.acts.tsz -o merged.tsz &&
		tsz to-npy --name $HOOK merged.npy merged.tsz
	) &&
	"$PYTHON" "$TEST_DIRECTORY/helpers/npy_close.py" --tol 1e-4 single.npy bare-run/merged.npy
'

test_expect_success LOOPBACK_SSH,NUMPY,TINY_MODEL 'a job that fails remotely fails the run and returns nothing' '
	mkdir ssh-fail && cp shard.00.tsz ssh-fail/ && head -c 200 shard.01.tsz >ssh-fail/shard.01.tsz && (
		cd ssh-fail &&
		test_must_fail timeout 180 parallel --will-cite --ssh "ssh -F $PWD/../ssh_config" -S 1/loopback \
			--workdir "$PWD/../remote" --transferfile {} --return {.}.acts.tsz --cleanup \
			"$FWD {} -o {.}.acts.tsz" ::: shard.00.tsz shard.01.tsz 2>err
	) &&
	grep "gpt2-fwd: shard.01.tsz: " ssh-fail/err &&
	test -f ssh-fail/shard.00.acts.tsz && test ! -e ssh-fail/shard.01.acts.tsz
'

# experiment.mk over the same sshd: the activation store of a run with
# HOSTS is byte for byte the store of a local run (tokens made by tsz here)
run_acts () {
	timeout 300 make -s -f "$SRC_DIR/pipelines/experiment.mk" MODEL="$TINY_MODEL_DIR" CORPUS=corp LAYER=3 \
		SHARDS=3 SHUFFLE=500 "$@"
}
store=runs/tiny-gpt2-docs/corp-ctx128-s3/blocks.3.mlp.hook_post-bf16

test_expect_success LOOPBACK_SSH,NUMPY,TINY_MODEL 'experiment.mk acts: HOSTS over ssh gives the local store, byte for byte' '
	for d in mk-local mk-ssh; do
		mkdir -p $d/corp $d/runs/tiny-gpt2-docs/corp-ctx128-s3 &&
		echo text >$d/corp/a.txt && touch -d 2001-01-01 $d/corp/a.txt &&
		(cd $d && run_acts runs/tiny-gpt2-docs/corp-ctx128-s3/tok.params) &&
		cp tokens.tsz $d/runs/tiny-gpt2-docs/corp-ctx128-s3/ || return 1
	done &&
	(cd mk-local && run_acts -j2 acts) &&
	(cd mk-ssh && run_acts -j3 acts HOSTS=loopback,loopback2 SSH="ssh -F $TRASH_DIRECTORY/ssh_config") &&
	for f in rows.00 rows.01 rows.02 ctx.00 ctx.01 ctx.02; do
		cmp mk-local/$store/$f.tsz mk-ssh/$store/$f.tsz || return 1
	done
'

test_expect_success LOOPBACK_SSH,NUMPY,TINY_MODEL 'experiment.mk resumes: a rerun redoes nothing, a changed parameter reruns the taps' '
	touch marker &&
	(cd mk-ssh && run_acts acts HOSTS=loopback SSH="ssh -F $TRASH_DIRECTORY/ssh_config") &&
	(cd mk-local && run_acts acts) &&
	find mk-local/runs mk-ssh/runs -newer marker >redone &&
	test_line_count = 0 redone &&
	(cd mk-local && run_acts acts SHUFFLE=600) &&
	find mk-local/$store -name "rows.*.tsz" -newer marker >redone &&
	test_line_count = 3 redone
'

test_expect_success LOOPBACK_SSH,NUMPY,TINY_MODEL 'experiment.mk explain: encode, top-k and explanation parts over HOSTS equal the local run' '
	test -x "$SRC_DIR/bin/sae-fit" && test -x "$SRC_DIR/bin/topk-ctx" && test -x "$SRC_DIR/bin/sae-encode" &&
	cfg="ARCH=topk DICT=1x K=8 TOKENS=5K TOPK_K=4 WINDOW=16 RANDOM=2" &&
	(cd mk-local && run_acts -j2 $cfg explain) &&
	(cd mk-ssh && run_acts -j3 $cfg explain HOSTS=loopback,loopback2 SSH="ssh -F $TRASH_DIRECTORY/ssh_config") &&
	for f in sae topk.00 topk.01 topk.02 topk expl.00 expl.01 expl.02 expl; do
		cmp mk-local/$store/topk-1x-k8-t5K/$f.tsz mk-ssh/$store/topk-1x-k8-t5K/$f.tsz || return 1
	done
'

test_expect_success LOOPBACK_SSH 'stop sshd' '
	kill $(cat sshd.pid.bg) &&
	for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 $(cat sshd.pid.bg) 2>/dev/null || break; sleep 0.2; done &&
	! kill -0 $(cat sshd.pid.bg) 2>/dev/null
'
SSHD_PID=

test_done
