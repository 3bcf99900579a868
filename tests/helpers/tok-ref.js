// tok-ref.js: independent GPT-2 token ids for the golden files in
// tests/data/tok (run by make-tok-goldens.sh; not used by make check).
//
//   node tok-ref.js GPT2_DIR FILE...     writes FILE's ids to FILE minus .txt plus .ids
//
// Two references, both independent of lib/bpe.c:
//  - the npm package gpt-tokenizer (model gpt2), checked against gpt-3-encoder,
//    for text that is valid UTF-8;
//  - a direct transcription of GPT-2's encoder.py below (the JS regex with
//    \s spelled as Unicode White_Space, as Python's regex module, tiktoken
//    and Hugging Face match it; bpe() on GPT2_DIR's vocab.json and
//    merges.txt), fed text decoded the way Python's errors="surrogateescape"
//    does: every byte that is not part of valid UTF-8 becomes the lone
//    surrogate U+DC00+byte, which the regex classes as "other" and which
//    encodes back to its byte. The npm packages cannot take such input (JS
//    strings from bytes turn invalid bytes into U+FFFD), so for invalid
//    UTF-8 only this reference is used; for valid text both must agree
//    except where the packages' JS \s differs from White_Space (U+0085,
//    U+FEFF), reported and resolved in favour of White_Space.
// The literal <|endoftext|> is the special token 50256: the text is split
// on it and the pieces encoded on their own, as tiktoken and HF do.
'use strict';
const fs = require('fs');
const path = require('path');

const [dir, ...files] = process.argv.slice(2);
if (!dir || !files.length) {
    console.error('usage: node tok-ref.js GPT2_DIR FILE...');
    process.exit(2);
}

// ---- encoder.py ----
function bytesToUnicode() {
    const bs = [];
    for (let c = 33; c <= 126; c++) bs.push(c);
    for (let c = 161; c <= 172; c++) bs.push(c);
    for (let c = 174; c <= 255; c++) bs.push(c);
    const cs = bs.slice();
    let n = 0;
    for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
    const m = new Array(256);
    bs.forEach((b, i) => { m[b] = String.fromCodePoint(cs[i]); });
    return m;
}
const byteEncoder = bytesToUnicode();
const encoder = JSON.parse(fs.readFileSync(path.join(dir, 'vocab.json'), 'utf8'));
const mergeLines = fs.readFileSync(path.join(dir, 'merges.txt'), 'utf8').split('\n');
const ranks = new Map();
mergeLines.slice(1).filter((l) => l.length).forEach((l, i) => {
    if (!ranks.has(l)) ranks.set(l, i);
});

function bpe(token) {
    let word = Array.from(token);
    while (word.length > 1) {
        let best = null, bestRank = Infinity;
        for (let i = 0; i + 1 < word.length; i++) {
            const r = ranks.get(word[i] + ' ' + word[i + 1]);
            if (r !== undefined && r < bestRank) { bestRank = r; best = [word[i], word[i + 1]]; }
        }
        if (!best) break;
        const [first, second] = best, nw = [];
        let i = 0;
        while (i < word.length) {
            const j = word.indexOf(first, i);
            if (j < 0) { nw.push(...word.slice(i)); break; }
            nw.push(...word.slice(i, j));
            i = j;
            if (word[i] === first && i < word.length - 1 && word[i + 1] === second) { nw.push(first + second); i += 2; }
            else { nw.push(word[i]); i += 1; }
        }
        word = nw;
    }
    return word;
}

const WS = '\\t-\\r\\u0085\\p{Z}';
const pat = new RegExp(`'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^${WS}\\p{L}\\p{N}]+|[${WS}]+(?![^${WS}])|[${WS}]+`, 'gu');
const fatal = new TextDecoder('utf-8', { fatal: true });

// bytes -> string, invalid bytes as lone surrogates (surrogateescape)
function surrogateEscape(buf) {
    let s = '';
    for (let i = 0; i < buf.length;) {
        let done = false;
        for (let len = 1; len <= 4 && i + len <= buf.length && !done; len++) {
            try {
                s += fatal.decode(buf.subarray(i, i + len));
                i += len;
                done = true;
            } catch (e) { /* not a whole character yet */ }
        }
        if (!done) s += String.fromCharCode(0xdc00 + buf[i++]);
    }
    return s;
}

function pieceBytes(piece) {
    const out = [];
    for (const ch of piece) {
        const cp = ch.codePointAt(0);
        if (cp >= 0xdc80 && cp <= 0xdcff) out.push(cp - 0xdc00);
        else out.push(...Buffer.from(ch, 'utf8'));
    }
    return out;
}

function encodePy(buf) {
    const ids = [];
    for (const piece of surrogateEscape(buf).match(pat) || []) {
        const t = pieceBytes(piece).map((b) => byteEncoder[b]).join('');
        for (const w of bpe(t)) ids.push(encoder[w]);
    }
    return ids;
}

// ---- the npm packages ----
let npm = null;
try {
    const g = require('gpt-tokenizer/cjs/model/gpt2');
    const e3 = require('gpt-3-encoder');
    npm = (s) => {
        const a = g.encode(s), b = e3.encode(s);
        if (a.join() !== b.join()) throw new Error('gpt-tokenizer and gpt-3-encoder disagree');
        return a;
    };
} catch (e) {
    console.error(`tok-ref: npm packages not found (${e.message}); only the encoder.py transcription is used`);
}

const EOT = Buffer.from('<|endoftext|>');
const isValid = (b) => { try { fatal.decode(b); return true; } catch (e) { return false; } };

for (const f of files) {
    const buf = fs.readFileSync(f);
    const ids = [];
    let p = 0, bad = 0;
    for (;;) {
        const q = buf.indexOf(EOT, p);
        const seg = buf.subarray(p, q < 0 ? buf.length : q);
        const mine = encodePy(seg);
        if (npm && isValid(seg)) {
            const theirs = npm(seg.toString('utf8'));
            if (theirs.join() !== mine.join()) bad++;
        }
        ids.push(...mine);
        if (q < 0) break;
        ids.push(encoder['<|endoftext|>']);
        p = q + EOT.length;
    }
    const out = f.replace(/\.txt$/, '') + '.ids';
    fs.writeFileSync(out, ids.join('\n') + '\n');
    console.error(`${out}: ${ids.length} tokens${bad ? `, npm packages differ on ${bad} segment(s) (JS \\s)` : npm ? ', npm packages agree' : ''}`);
}
