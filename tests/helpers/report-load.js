// report-load.js CHROMIUM PROFILE URL [HASH...]: load a sae-report page in
// headless Chromium, driven over the DevTools protocol on a pipe
// (--remote-debugging-pipe: fds 3 and 4, messages ending in NUL; no
// WebSocket library needed), wait until the page's status leaves
// "loading", then set each HASH (e.g. "#page=57", "#q=marker 77") in turn
// and wait until the first feature of the new list has its examples.
// Prints one JSON line per step: the page's state and status text, the
// side files it loaded, the list's count line, cards and examples shown,
// the feature shown first; on the load step also first paint and first
// contentful paint, the page's own marks (index listed, first feature
// shown) in ms since navigation, the JS heap and the resident memory of
// all Chromium processes (MB). Exit 1 on a timeout or protocol error.
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');

const [chromium, profile, url, ...hashes] = process.argv.slice(2);
if (!url) {
    console.error('usage: report-load.js CHROMIUM PROFILE URL [HASH...]');
    process.exit(2);
}
const TIMEOUT_MS = 300000;
const proc = spawn(chromium, ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync', '--remote-debugging-pipe',
    '--user-data-dir=' + profile, 'about:blank'], { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] });
const toChrome = proc.stdio[3], fromChrome = proc.stdio[4];
let nextId = 1, buf = Buffer.alloc(0);
const waiting = new Map();
fromChrome.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    let z;
    while ((z = buf.indexOf(0)) >= 0) {
        const msg = JSON.parse(buf.subarray(0, z).toString('utf8'));
        buf = buf.subarray(z + 1);
        const w = msg.id && waiting.get(msg.id);
        if (!w) continue;
        waiting.delete(msg.id);
        if (msg.error) w.reject(new Error(JSON.stringify(msg.error)));
        else w.resolve(msg.result);
    }
});
function send(method, params, sessionId) {
    const id = nextId++;
    toChrome.write(JSON.stringify({ id, method, params: params || {}, sessionId }) + '\0');
    return new Promise((resolve, reject) => waiting.set(id, { resolve, reject }));
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function fail(why) {
    console.error('report-load.js: ' + why);
    proc.kill('SIGKILL');
    process.exit(1);
}

// resident memory of the Chromium process and its descendants, MB
function rssMB() {
    const kids = new Map();
    for (const p of fs.readdirSync('/proc')) {
        if (!/^\d+$/.test(p)) continue;
        try {
            const st = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
            const ppid = +st.slice(st.lastIndexOf(')') + 2).split(' ')[1];
            if (!kids.has(ppid)) kids.set(ppid, []);
            kids.get(ppid).push(+p);
        } catch (e) { /* gone */ }
    }
    let kb = 0;
    const todo = [proc.pid];
    while (todo.length) {
        const p = todo.pop();
        try {
            const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'));
            if (m) kb += +m[1];
        } catch (e) { /* gone */ }
        todo.push(...(kids.get(p) || []));
    }
    return Math.round(kb / 1024);
}

const PROBE = `(function(){var s=document.getElementById('status'),o=document.querySelector('#list details[open]');
 return JSON.stringify({state:s?s.getAttribute('data-state'):null,status:s?s.textContent:null,
  chunks:s?s.getAttribute('data-chunks'):null,count:(document.getElementById('count')||{}).textContent,
  cards:document.querySelectorAll('#list details.feat').length,
  examples:o?o.querySelectorAll('.ex').length:0,opened:o?o.id:null,
  hist:o?o.querySelectorAll('svg.hist rect').length:0});})()`;
const TIMES = `JSON.stringify({paint:performance.getEntriesByType('paint').map(function(e){return [e.name,e.startTime];}),
 marks:performance.getEntriesByType('mark').map(function(e){return [e.name,e.startTime];})})`;

async function main() {
    const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
    const ev = async (expr) => {
        const r = await send('Runtime.evaluate', { expression: expr, returnByValue: true }, sessionId);
        if (r.exceptionDetails) throw new Error(r.exceptionDetails.text);
        return r.result.value;
    };
    await send('Page.enable', {}, sessionId);
    await send('Performance.enable', {}, sessionId);
    // wait until done(probe) holds, the page having left "loading"
    const until = async (done) => {
        const t0 = Date.now();
        for (;;) {
            const p = JSON.parse(await ev(PROBE));
            if (p.state === 'error') return p;
            if (p.state && p.state !== 'loading' && done(p)) return p;
            if (Date.now() - t0 > TIMEOUT_MS) fail('timed out; last probe ' + JSON.stringify(p));
            await sleep(25);
        }
    };
    await send('Page.navigate', { url }, sessionId);
    let p = await until(() => true);
    const t = JSON.parse(await ev(TIMES));
    const m = {};
    for (const x of (await send('Performance.getMetrics', {}, sessionId)).metrics) m[x.name] = x.value;
    const ms = (l, n) => { const e = l.find((x) => x[0] === n); return e ? Math.round(e[1]) : null; };
    console.log(JSON.stringify(Object.assign({ step: 'load', url }, p, {
        first_paint_ms: ms(t.paint, 'first-paint'), first_contentful_paint_ms: ms(t.paint, 'first-contentful-paint'),
        list_ms: ms(t.marks, 'saepipe-list'), first_feature_ms: ms(t.marks, 'saepipe-feature'),
        js_heap_mb: Math.round(m.JSHeapUsedSize / 1048576), rss_mb: rssMB() })));
    for (const h of hashes) {
        const before = p.opened, t0 = Date.now();
        await ev(`location.hash=${JSON.stringify(h)}`);
        p = await until((q) => q.examples > 0 && (q.opened !== before || q.count !== p.count));
        console.log(JSON.stringify(Object.assign({ step: h }, p, { ms: Date.now() - t0, rss_mb: rssMB() })));
    }
    await send('Browser.close').catch(() => {});
    proc.kill('SIGKILL');
    process.exit(0);
}
main().catch((e) => fail(e.message));
