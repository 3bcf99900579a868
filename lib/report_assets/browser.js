(function(){
'use strict';
/* The feature browser. S, the store, has the index (one entry per feature
 * in input order: id, top token, density, max activation, score as typed
 * arrays; status letters; explanations) and get(pos, cb), which hands over
 * a feature's full record. One page: everything is in the data blob and the
 * index is built from it. A directory (report_pages.c): features/index.js
 * and, when a feature is opened, its side file features/NNNN.js, both
 * through script elements (work from file://, where fetch() does not). */
var D=JSON.parse(document.getElementById('saepipe-data').textContent);
var V={},S=null,P=50,page=0,view=[],chunks={},loaded=[],MAXCHUNKS=8,shown=0;
var $=function(id){return document.getElementById(id);};
var st=$('status');
function state(s,t){st.textContent=t;st.setAttribute('data-state',s);}
function el(t,c,x){var e=document.createElement(t);if(c)e.className=c;if(x!=null)e.textContent=x;return e;}
function tok(id){var s=typeof id==='string'?id:V[id];if(s==null)s='\u27e8'+id+'\u27e9';return s.replace(/\n/g,'\u21b5').replace(/\t/g,'\u2192');}
function fmt(v,d){return v==null||v!==v?'\u2013':(+v).toPrecision(d||3);}
function num(v){return v!==v?-Infinity:v;}
var B='ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_',BI={};for(var i=0;i<64;i++)BI[B[i]]=i;
function unpack(x){if(x._u)return;if(typeof x.t==='string'){var t=[];for(var i=0;i+2<x.t.length;i+=3)t.push(BI[x.t[i]]*4096+BI[x.t[i+1]]*64+BI[x.t[i+2]]);x.t=t;}
 var a=[];for(var j=0;j<x.a.length;j++)a.push(BI[x.a[j]]*100/63);x.a=a;x._u=1;}
function argmax(a){var m=0;for(var i=1;i<a.length;i++)if(a[i]>a[m])m=i;return m;}
function pad(k){var s=''+k;while(s.length<4)s='0'+s;return s;}

/* ---- the store ---- */
function fromFeatures(F){var n=F.length,s={n:n,id:new Int32Array(n),tt:new Int32Array(n),d:new Float32Array(n),
  mx:new Float32Array(n),s:new Float32Array(n),x:'',e:new Array(n)};
 var nn=function(v){return v==null?NaN:v;},xs=[];
 F.forEach(function(f,i){s.id[i]=f.i;s.d[i]=nn(f.d);s.mx[i]=nn(f.mx);s.s[i]=nn(f.s);s.e[i]=f.e==null?null:f.e;s.tt[i]=-1;
  if(f.top&&f.top.length){var x=f.top[0];unpack(x);s.tt[i]=x.t[argmax(x.a)];}
  xs.push(f.x==null?'-':f.x==='failed'?'f':f.x==='dead'?'d':'o');});
 s.x=xs.join('');s.get=function(i,cb){cb(F[i]);};return s;}
function b64(str,T){var b=atob(str),u=new Uint8Array(b.length);for(var i=0;i<b.length;i++)u[i]=b.charCodeAt(i);return new T(u.buffer);}
function fromIndex(I){return {n:I.n,chunk:I.chunk,nchunks:I.nchunks,id:b64(I.id,Int32Array),tt:b64(I.tt,Int32Array),
  d:b64(I.d,Float32Array),mx:b64(I.mx,Float32Array),s:b64(I.s,Float32Array),x:I.x,e:I.e,get:getPaged};}
function script(src,onerr){var s=document.createElement('script');s.src=src;s.onerror=onerr;document.body.appendChild(s);return s;}
/* the side file of position i, loaded once; at most MAXCHUNKS kept, the
 * least recently used dropped */
function getPaged(i,cb){var k=Math.floor(i/S.chunk),c=chunks[k];
 if(!c){var src=D.pages+pad(k)+'.js';c=chunks[k]={wait:[],data:null,used:0};
  c.el=script(src,function(){state('error','error: cannot load '+src);});loaded.push(k);st.setAttribute('data-chunks',loaded.join(' '));
  var ks=Object.keys(chunks);if(ks.length>MAXCHUNKS){ks.sort(function(a,b){return chunks[a].used-chunks[b].used;});
   for(var j=0;j<ks.length-MAXCHUNKS;j++){var o=chunks[ks[j]];if(!o.data)continue;o.el.parentNode.removeChild(o.el);delete chunks[ks[j]];}}}
 c.used=++shown;
 var give=function(){var f=c.data[i-k*S.chunk];
  if(!f||f.i!==S.id[i]){state('error','error: '+D.pages+pad(k)+'.js does not match the index');return;}cb(f);};
 if(c.data)give();else c.wait.push(give);}
window.SAEPIPE_CHUNK=function(k,arr){var c=chunks[k];if(!c)return;c.data=arr;var w=c.wait;c.wait=[];w.forEach(function(f){f();});};
window.SAEPIPE_INDEX=function(I){V=I.vocab;S=fromIndex(I);start();};

/* ---- one feature ---- */
function ex(x,mx){unpack(x);var d=el('div','ex');d.appendChild(el('span','exm',fmt(x.m)));
 x.t.forEach(function(t,i){var a=x.a[i],s=el('span','tk',tok(t));
  if(a>0)s.style.background='rgba(255,102,0,'+Math.min(1,a/100).toFixed(2)+')';
  s.title=JSON.stringify(V[t]==null?'':V[t])+' id '+t+': '+(mx?(a/100*mx).toPrecision(3):a);d.appendChild(s);});
 if(x.src)d.title='doc '+x.src[0]+', token '+x.src[1];return d;}
function explanation(f){var b=el('div','expl');
 b.appendChild(el('p','etext',f.e||(f.x==='failed'?'(explanation failed)':f.x==='dead'?'(dead: never fired)':'(no explanation)')));
 if(f.er)b.appendChild(el('p','err','explanation failed: '+f.er));
 var sc=f.sc||(f.y?f.y.k:f.s!=null?'simulation':null);if(sc==null)return b;
 var t='scorer '+sc+(f.be?' ('+f.be+')':'')+': ';
 if(f.y)t+='balanced accuracy '+fmt(f.y.ba)+', precision '+fmt(f.y.p)+', recall '+fmt(f.y.r)+', F1 '+fmt(f.y.f1)+', AUROC '+fmt(f.y.auc);
 else t+='score '+fmt(f.s)+' (top '+fmt(f.st)+', random '+fmt(f.sr)+')';
 b.appendChild(el('p','escore',t));return b;}
var NS='http://www.w3.org/2000/svg';
function svg(t,a){var e=document.createElementNS(NS,t);for(var k in a)e.setAttribute(k,a[k]);return e;}
/* the activation histogram: one bar per bin (topk-ctx's are half octaves,
 * so equal widths are a log scale), bin edges below */
function hist(f){var h=f.h,n=h.c.length,W=360,H=96,M=4,bw=(W-2*M)/n,cm=Math.max.apply(null,h.c)||1;
 var s=svg('svg',{'class':'hist',width:W,height:H+16,viewBox:'0 0 '+W+' '+(H+16),role:'img'});
 h.c.forEach(function(c,i){var y=H-(H-8)*c/cm,r=svg('rect',{'class':'bar',x:(M+i*bw).toFixed(1),y:y.toFixed(1),width:Math.max(bw-1,0.5).toFixed(1),height:(H-y).toFixed(1)});
  var t=svg('title',{});t.textContent='['+fmt(h.e[i])+', '+(h.e[i+1]==null?'\u221e':fmt(h.e[i+1]))+'): '+c;r.appendChild(t);s.appendChild(r);});
 [0,n>>1,n].forEach(function(i,j){var t=svg('text',{x:(M+i*bw).toFixed(1),y:H+12,'class':'xt','text-anchor':['start','middle','end'][j]});
  t.textContent=h.e[i]==null?'\u221e':fmt(h.e[i],2);s.appendChild(t);});return s;}
function logits(f,b){b.appendChild(el('h4',null,'Logit effects'));var w=el('div','logits');
 f.lg.forEach(function(p){var t=el('table','lg');var c=el('caption',null,p[0]);t.appendChild(c);
  p[1].forEach(function(q){var r=el('tr');r.appendChild(el('td','l',tok(q[0])));r.appendChild(el('td',null,fmt(q[1])));t.appendChild(r);});w.appendChild(t);});
 b.appendChild(w);}
function body(f,d){if(d._done)return;d._done=1;var b=el('div','fb');
 b.appendChild(explanation(f));
 b.appendChild(el('div','fstat','density '+fmt(f.d)+(f.d>0?' (1 in '+Math.round(1/f.d)+' tokens)':'')+' \u00b7 fired '+(f.n==null?'\u2013':f.n)+
  (f.nt!=null?' of '+f.nt+' tokens':'')+' \u00b7 max '+fmt(f.mx)+' \u00b7 mean '+fmt(f.mn)));
 if(f.h){b.appendChild(el('h4',null,'Activation histogram'));b.appendChild(hist(f));}
 if(f.lg)logits(f,b);
 [['top','Top activations'],['bands','Activation quantile bands'],['rnd','Random activating examples']].forEach(function(p){var L=f[p[0]];if(!L||!L.length)return;
  b.appendChild(el('h4',null,p[1]));var lb=null;L.forEach(function(x){if(x.b!=null&&x.b!==lb){lb=x.b;b.appendChild(el('div','band','band '+x.b));}b.appendChild(ex(x,f.mx));});});
 d.appendChild(b);
 if(st.getAttribute('data-state')==='loading'){state('ok','ok: '+S.n+' features');if(window.performance&&performance.mark)performance.mark('saepipe-feature');}}
function open(pos,d){S.get(pos,function(f){body(f,d);});}

/* ---- the list: from the index alone ---- */
function card(pos){var d=el('details','feat'),x=S.x[pos];d.id='feature-'+S.id[pos];var s=el('summary');
 s.appendChild(el('span','fid','#'+S.id[pos]));
 s.appendChild(el('span','fe',S.e[pos]||(x==='f'?'(explanation failed)':x==='d'?'(dead)':'(no explanation)')));
 s.appendChild(el('span','fs','score '+fmt(S.s[pos],2)));s.appendChild(el('span','fd','density '+fmt(S.d[pos],2)));
 d.appendChild(s);d.addEventListener('toggle',function(){if(d.open)open(pos,d);});return d;}
var sorts={id:function(a,b){return S.id[a]-S.id[b]||a-b;},score:function(a,b){return num(S.s[b])-num(S.s[a])||a-b;},
 dens:function(a,b){return num(S.d[b])-num(S.d[a])||a-b;},densasc:function(a,b){return num(S.d[a])-num(S.d[b])||a-b;},
 max:function(a,b){return num(S.mx[b])-num(S.mx[a])||a-b;}};
var txt=null;
function text(i){if(!txt)txt=new Array(S.n);if(txt[i]==null){var t=S.tt[i];txt[i]=('#'+S.id[i]+' '+(S.e[i]||'')+' '+(t>=0&&V[t]!=null?V[t]:'')).toLowerCase();}return txt[i];}
function render(openFirst){var L=$('list');L.textContent='';var pages=Math.max(1,Math.ceil(view.length/P));
 if(page>=pages)page=pages-1;if(page<0)page=0;
 for(var i=page*P;i<Math.min(view.length,page*P+P);i++)L.appendChild(card(view[i]));
 $('count').textContent=view.length+' of '+S.n+' features \u00b7 page '+(page+1)+'/'+pages;
 var first=L.firstChild;if(openFirst&&first){first.open=true;open(view[page*P],first);}
 if(!first&&st.getAttribute('data-state')==='loading')state('ok','ok: '+S.n+' features');}
function select(){var q=$('q').value.trim().toLowerCase();view=[];
 for(var i=0;i<S.n;i++)if(!q||text(i).indexOf(q)>=0)view.push(i);
 view.sort(sorts[$('sort').value]||sorts.id);}
function update(keep){select();if(!keep)page=0;render(true);}
/* the URL fragment: #feature-N opens feature N; #q=TEXT&sort=KEY&page=N
 * sets the search, the order and the page (1 is the first) */
function openHash(){var h=location.hash.replace(/^#/,''),m=/^feature-(\d+)$/.exec(h);
 if(m){var id=+m[1],find=function(){return view.findIndex(function(p){return S.id[p]===id;});},k=find();
  if(k<0){$('q').value='';select();k=find();}
  if(k<0){render(true);return;}page=Math.floor(k/P);render(false);var d=$('feature-'+id);d.open=true;open(view[k],d);d.scrollIntoView();return;}
 var kv={};h.split('&').forEach(function(p){var i=p.indexOf('=');if(i>0)kv[p.slice(0,i)]=decodeURIComponent(p.slice(i+1));});
 if(kv.q!=null)$('q').value=kv.q;if(kv.sort&&sorts[kv.sort])$('sort').value=kv.sort;
 page=kv.page?(+kv.page||1)-1:0;update(true);}
function start(){
 $('q').addEventListener('input',function(){update();});$('sort').addEventListener('change',function(){update();});
 $('prev').addEventListener('click',function(){page--;render(true);});$('next').addEventListener('click',function(){page++;render(true);});
 window.addEventListener('hashchange',openHash);
 select();if(location.hash)openHash();else render(true);
 if(window.performance&&performance.mark)performance.mark('saepipe-list');}

if(D.pages){script(D.pages+'index.js',function(){state('error','error: cannot load '+D.pages+'index.js');});}
else{V=D.vocab;S=fromFeatures(D.features);start();}
})();
