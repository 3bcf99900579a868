#!/bin/sh
test_description='tsz: inspect, validate, convert, split and merge tensor streams'
. "$(dirname "$0")/test-lib.sh"

test_expect_success 'help and version' '
	tsz --help >out && grep "^Usage: tsz COMMAND" out &&
	tsz --version >out && grep "^tsz (saepipe)" out
'

test_expect_success 'bad usage exits 2 with one clear line' '
	test_expect_code_2 () { "$@"; test $? = 2; } &&
	test_expect_code_2 tsz frobnicate 2>err && grep "^tsz: unknown command .frobnicate." err &&
	test_expect_code_2 tsz head -n x 2>err && grep "^tsz: -n: expected a whole number" err &&
	test_expect_code_2 tsz from-npy justaname 2>err && grep "^tsz: from-npy: expected NAME=FILE.npy" err &&
	test_expect_code_2 tsz split -n 0 p 2>err && grep "^tsz: split: -n K must be" err
'

test_expect_success NUMPY 'from-npy and to-npy round trip every numpy dtype' '
	"$PYTHON" - <<-\PY &&
	import numpy as np
	rng = np.random.default_rng(1)
	for name, dt in [("f4", np.float32), ("f2", np.float16), ("i4", np.int32), ("i8", np.int64),
	                 ("u1", np.uint8), ("u2", np.uint16), ("u4", np.uint32)]:
	    a = (rng.standard_normal((37, 5, 3)) * 100).astype(dt)
	    np.save(name + ".npy", a)
	PY
	for d in f4 f2 i4 i8 u1 u2 u4; do
		tsz from-npy --rows 8 x=$d.npy >$d.tsz &&
		tsz to-npy $d.back.npy $d.tsz &&
		"$PYTHON" -c "import numpy as np, sys; a=np.load(\"$d.npy\"); b=np.load(\"$d.back.npy\"); sys.exit(0 if a.dtype==b.dtype and a.shape==b.shape and (a==b).all() else 1)" || return 1
	done &&
	tsz json f4.tsz >json && test_line_count = 5 json &&
	grep "\"shape\":\[8,5,3\]" json && grep "\"shape\":\[5,5,3\]" json
'

test_expect_success NUMPY 'npy format 2.0, 0-d arrays and bf16 to f32' '
	"$PYTHON" - <<-\PY &&
	import numpy as np
	from numpy.lib import format as F
	a = np.arange(12, dtype=np.float32).reshape(4, 3)
	with open("v2.npy", "wb") as f:
	    F.write_array(f, a, version=(2, 0))
	np.save("scalar.npy", np.float32(2.5))
	PY
	tsz from-npy x=v2.npy s=scalar.npy >v2.tsz &&
	tsz to-npy --name x back.npy v2.tsz &&
	tsz json --full v2.tsz >json && grep "\"s\":{\"dtype\":\"f32\",\"shape\":\[\],\"data\":2.5}" json &&
	"$PYTHON" -c "import numpy as np, sys; sys.exit(0 if (np.load(\"back.npy\")==np.arange(12).reshape(4,3)).all() else 1)"
'

test_expect_success NUMPY 'unsupported npy files are refused by name' '
	"$PYTHON" - <<-\PY &&
	import numpy as np
	np.save("big.npy", np.arange(4, dtype=">f4"))
	np.save("fort.npy", np.asfortranarray(np.ones((3, 2), dtype=np.float32)))
	np.save("obj.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
	np.save("f8.npy", np.ones(3))
	np.save("ok.npy", np.ones((100, 4), dtype=np.float32))
	PY
	head -c 200 ok.npy >short.npy && echo "not numpy" >text.npy &&
	test_must_fail tsz from-npy x=big.npy >o 2>err && grep "^tsz: big.npy: big-endian arrays are not supported" err &&
	test_must_fail tsz from-npy x=fort.npy >o 2>err && grep "^tsz: fort.npy: Fortran-order arrays are not supported" err &&
	test_must_fail tsz from-npy x=obj.npy >o 2>err && grep "^tsz: obj.npy: .*not supported" err &&
	test_must_fail tsz from-npy x=f8.npy >o 2>err && grep "^tsz: f8.npy: dtype .<f8. is not supported" err &&
	test_must_fail tsz from-npy x=short.npy >o 2>err && grep "^tsz: short.npy: truncated" err &&
	test_must_fail tsz from-npy x=text.npy >o 2>err && grep "^tsz: text.npy: not a .npy file" err &&
	test_must_fail tsz from-npy x=nope.npy >o 2>err && grep "^tsz: nope.npy: cannot open" err
'

test_expect_success NUMPY 'concatenated streams are one stream; info shows both segments' '
	"$PYTHON" -c "import numpy as np; np.save(\"a.npy\", np.arange(20, dtype=np.int32).reshape(10, 2))" &&
	tsz from-npy --rows 3 t=a.npy >a.tsz &&
	cat a.tsz a.tsz >aa.tsz &&
	tsz info aa.tsz >info && grep "^segments: 2" info && grep "^records: 8" info &&
	grep "rows 20" info &&
	tsz cat a.tsz a.tsz >cat.tsz && tsz info cat.tsz >info2 && grep "^records: 8" info2 &&
	grep "^segments: 1" info2 && grep "inputs:" info2 &&
	tsz json aa.tsz >j1 && tsz json cat.tsz >j2 && test_cmp j1 j2
'

test_expect_success NUMPY 'head keeps the first records' '
	tsz head -n 2 a.tsz >h.tsz && tsz json h.tsz >j && test_line_count = 2 j &&
	tsz head -n 0 a.tsz | tsz json >j0 && test_line_count = 0 j0
'

test_expect_success NUMPY 'truncated and corrupt streams fail and name the input' '
	size=$(wc -c <a.tsz) &&
	head -c $((size - 1)) a.tsz >cut.tsz &&
	test_must_fail tsz cat cut.tsz >out 2>err &&
	grep "^tsz: cut.tsz: truncated" err &&
	head -c $((size - 30)) a.tsz >cut2.tsz &&
	test_must_fail tsz info cut2.tsz >out 2>err && grep "^tsz: cut2.tsz: " err &&
	test_must_fail tsz json <cut.tsz >out 2>err && grep "^tsz: stdin: truncated" err &&
	cp a.tsz flip.tsz &&
	printf "\377\377\377\377" | dd of=flip.tsz bs=1 seek=60 conv=notrunc 2>/dev/null &&
	test_must_fail tsz info flip.tsz >out 2>err && grep "^tsz: flip.tsz: " err &&
	test_must_fail tsz info missing.tsz >out 2>err && grep "^tsz: missing.tsz: cannot open" err &&
	: >empty.tsz && test_must_fail tsz info empty.tsz >out 2>err &&
	grep "^tsz: empty.tsz: empty input" err &&
	echo hello >text.tsz && test_must_fail tsz info text.tsz >out 2>err &&
	grep "^tsz: text.tsz: not a tsz stream" err
'

test_expect_success NUMPY 'a stream cut at a record boundary lacks its end marker' '
	"$PYTHON" - a.tsz <<-\PY &&
	import sys
	# zstd frames: find where the last frame (the end record) starts
	d = open(sys.argv[1], "rb").read()
	starts = [i for i in range(len(d)) if d[i:i+4] == b"\x28\xb5\x2f\xfd"]
	open("noend.tsz", "wb").write(d[:starts[-1]])
	PY
	test_must_fail tsz info noend.tsz >out 2>err &&
	grep "^tsz: noend.tsz: ends after record 4 without end marker" err
'

test_expect_success NUMPY 'split balances rows, keeps order, and cat restores the stream' '
	"$PYTHON" -c "import numpy as np; np.save(\"r.npy\", np.arange(103*4, dtype=np.float32).reshape(103, 4)); np.save(\"id.npy\", np.arange(103, dtype=np.int64))" &&
	tsz from-npy --rows 10 x=r.npy id=id.npy >r.tsz &&
	tsz split -n 4 shard r.tsz &&
	for i in 00 01 02 03; do tsz to-npy --name id id$i.npy shard.$i.tsz || return 1; done &&
	"$PYTHON" - <<-\PY &&
	import numpy as np, sys
	parts = [np.load("id%02d.npy" % i) for i in range(4)]
	sizes = [len(p) for p in parts]
	assert max(sizes) - min(sizes) <= 1, sizes
	assert (np.concatenate(parts) == np.arange(103)).all()
	PY
	cat shard.*.tsz | tsz to-npy --name x all.npy &&
	"$PYTHON" -c "import numpy as np, sys; sys.exit(0 if (np.load(\"all.npy\")==np.load(\"r.npy\")).all() else 1)" &&
	tsz split -n 3 piped <r.tsz && test -f piped.02.tsz
'

test_expect_success NUMPY 'split into more shards than rows gives empty but valid shards' '
	"$PYTHON" -c "import numpy as np; np.save(\"two.npy\", np.ones((2, 3), dtype=np.float32))" &&
	tsz from-npy x=two.npy >two.tsz && tsz split -n 4 few two.tsz &&
	for i in 00 01 02 03; do tsz info few.$i.tsz >/dev/null || return 1; done &&
	tsz cat few.*.tsz | tsz to-npy x.npy &&
	"$PYTHON" -c "import numpy as np, sys; sys.exit(0 if np.load(\"x.npy\").shape==(2,3) else 1)"
'

test_expect_success NUMPY 'to-npy refuses a tensor whose shape changes, leaves no file' '
	"$PYTHON" -c "import numpy as np; np.save(\"p.npy\", np.ones((2, 3), dtype=np.float32)); np.save(\"q.npy\", np.ones((2, 4), dtype=np.float32))" &&
	tsz from-npy x=p.npy >p.tsz && tsz from-npy x=q.npy >q.tsz &&
	cat p.tsz q.tsz >pq.tsz &&
	test_must_fail tsz to-npy out.npy pq.tsz 2>err &&
	grep "^tsz: pq.tsz: record 2: tensor \"x\" is (2,4) f32, unlike the records before it" err &&
	! test -e out.npy &&
	test_must_fail tsz to-npy --name nope out.npy p.tsz 2>err && grep "no tensor named \"nope\"" err
'

test_expect_success NUMPY 'a failed stage leaves no file at -o' '
	test_must_fail tsz cat -o merged.tsz a.tsz cut.tsz 2>err &&
	! test -e merged.tsz && ! ls merged.tsz.tmp.* 2>/dev/null
'

# -o naming a device or a FIFO (-o /dev/null) is written in place: a temp
# file renamed onto it would replace the device. A FIFO stands in for
# /dev/null here, so that a failure cannot break the machine.
test_expect_success NUMPY '-o a FIFO: written through it, still a FIFO, no temp file beside it' '
	mkdir fifo-dir && mkfifo fifo-dir/p &&
	{ cat fifo-dir/p >through.tsz & } && tsz cat -o fifo-dir/p a.tsz && wait &&
	test -p fifo-dir/p && ls fifo-dir >left && test_line_count = 1 left &&
	tsz cat a.tsz >direct.tsz && cmp direct.tsz through.tsz &&
	{ cat fifo-dir/p >through.npy & } && tsz to-npy fifo-dir/p p.tsz 2>err; wait;
	test -p fifo-dir/p && ls fifo-dir >left && test_line_count = 1 left
'

test_expect_success NUMPY 'float activations compress better byte-shuffled' '
	"$PYTHON" -c "import numpy as np; a = np.maximum(np.random.default_rng(0).standard_normal((2000, 64)), 0).astype(np.float32); a = (a.view(np.uint32) & 0xffff0000).view(np.float32); np.save(\"act.npy\", a)" &&
	tsz from-npy x=act.npy >act.tsz &&
	tsz info act.tsz >info && ratio=$(sed -n "s/.*ratio //p" info) &&
	raw=$(wc -c <act.npy) && z=$(zstd -3 -c act.npy | wc -c) &&
	"$PYTHON" -c "import sys; r=float(\"$ratio\"); zr=$raw/$z; print(r, zr); sys.exit(0 if r > zr else 1)"
'

test_expect_success NUMPY 'provenance: tsz info shortens a long command line; repeated inputs are kept once' '
	"$PYTHON" -c "import numpy as np; np.save(\"z.npy\", np.zeros((2, 2), np.float32))" &&
	args= && for i in $(seq 60); do args="$args a$i=z.npy"; done &&
	tsz from-npy $args >wide.tsz &&
	tsz info wide.tsz >info && grep "a1=z.npy .*\.\.\. ([0-9]* more arguments)$" info &&
	test $(wc -L <info) -lt 500 &&
	tsz json --headers wide.tsz | grep -o "a[0-9]*=z.npy" >all && test_line_count = 60 all &&
	tsz cat wide.tsz wide.tsz wide.tsz >thrice.tsz &&
	# this cat, the cat that made thrice.tsz, from-npy once (not three times)
	tsz cat thrice.tsz | tsz json --headers | head -n 1 | grep -o "\"stage\":\"tsz\"" >n &&
	test_line_count = 3 n
'

test_done
