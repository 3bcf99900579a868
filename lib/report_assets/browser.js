(function(){
var D=JSON.parse(document.getElementById('saepipe-data').textContent);
var F=D.features,V=D.vocab,P=50,page=0,view=F.slice();
var $=function(id){return document.getElementById(id);};
function el(t,c,x){var e=document.createElement(t);if(c)e.className=c;if(x!=null)e.textContent=x;return e;}
function tok(id){var s=V[id];if(s==null)s='\u27e8'+id+'\u27e9';return s.replace(/\n/g,'\u21b5').replace(/\t/g,'\u2192');}
function fmt(v,d){return v==null?'\u2013':(+v).toPrecision(d||3);}
function num(v){return v==null?-Infinity:v;}
var B='ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_',BI={};for(var i=0;i<64;i++)BI[B[i]]=i;
function unpack(x){if(x._u)return;if(typeof x.t==='string'){var t=[];for(var i=0;i+2<x.t.length;i+=3)t.push(BI[x.t[i]]*4096+BI[x.t[i+1]]*64+BI[x.t[i+2]]);x.t=t;}
 var a=[];for(var j=0;j<x.a.length;j++)a.push(BI[x.a[j]]*100/63);x.a=a;x._u=1;}
function argmax(a){var m=0;for(var i=1;i<a.length;i++)if(a[i]>a[m])m=i;return m;}
function text(f){if(f._s==null){var s='#'+f.i+' '+(f.e||'');(f.top||[]).forEach(function(x){unpack(x);s+=' '+(V[x.t[argmax(x.a)]]||'');});f._s=s.toLowerCase();}return f._s;}
function ex(x,mx){unpack(x);var d=el('div','ex');d.appendChild(el('span','exm',fmt(x.m)));
 x.t.forEach(function(t,i){var a=x.a[i],s=el('span','tk',tok(t));
  if(a>0)s.style.background='rgba(255,102,0,'+Math.min(1,a/100).toFixed(2)+')';
  s.title=JSON.stringify(V[t]==null?'':V[t])+' id '+t+': '+(mx?(a/100*mx).toPrecision(3):a);d.appendChild(s);});
 if(x.src)d.title='doc '+x.src[0]+', token '+x.src[1];return d;}
function body(f,d){if(d._done)return;d._done=1;var b=el('div','fb');
 b.appendChild(el('div','fstat','density '+fmt(f.d)+' \u00b7 fired '+(f.n==null?'\u2013':f.n)+' \u00b7 max '+fmt(f.mx)+' \u00b7 mean '+fmt(f.mn)+' \u00b7 score '+fmt(f.s)+(f.y?' ('+f.y.k+': balanced accuracy '+fmt(f.y.ba)+', precision '+fmt(f.y.p)+', recall '+fmt(f.y.r)+', F1 '+fmt(f.y.f1)+', AUROC '+fmt(f.y.auc)+')':' (top '+fmt(f.st)+', random '+fmt(f.sr)+')')));
 if(f.er)b.appendChild(el('p','err','explanation failed: '+f.er));
 if(f.lg){var g=el('div','logits');[['p','Promoted tokens'],['n','Suppressed tokens']].forEach(function(p){var u=el('ul');u.appendChild(el('li','lgh',p[1]));
  f.lg[p[0]].forEach(function(x){var li=el('li');li.appendChild(el('span','tk',tok(x[0])));li.appendChild(el('span','lgv',fmt(x[1])));u.appendChild(li);});g.appendChild(u);});b.appendChild(g);}
 [['top','Top activations'],['bands','Activation quantile bands'],['rnd','Random activating examples']].forEach(function(p){var L=f[p[0]];if(!L||!L.length)return;
  b.appendChild(el('h4',null,p[1]));var lb=null;L.forEach(function(x){if(x.b!=null&&x.b!==lb){lb=x.b;b.appendChild(el('div','band','band '+x.b));}b.appendChild(ex(x,f.mx));});});
 d.appendChild(b);}
function card(f){var d=el('details','feat');d.id='feature-'+f.i;var s=el('summary');
 s.appendChild(el('span','fid','#'+f.i));
 s.appendChild(el('span','fe',f.e||(f.x==='failed'?'(explanation failed)':'(no explanation)')));
 s.appendChild(el('span','fs','score '+fmt(f.s,2)));s.appendChild(el('span','fd','density '+fmt(f.d,2)));
 d.appendChild(s);d.addEventListener('toggle',function(){if(d.open)body(f,d);});return d;}
var sorts={id:function(a,b){return a.i-b.i;},score:function(a,b){return num(b.s)-num(a.s)||a.i-b.i;},
 dens:function(a,b){return num(b.d)-num(a.d)||a.i-b.i;},densasc:function(a,b){return num(a.d)-num(b.d)||a.i-b.i;},
 max:function(a,b){return num(b.mx)-num(a.mx)||a.i-b.i;}};
function render(){var L=$('list');L.textContent='';var pages=Math.max(1,Math.ceil(view.length/P));
 if(page>=pages)page=pages-1;if(page<0)page=0;
 view.slice(page*P,page*P+P).forEach(function(f){L.appendChild(card(f));});
 $('count').textContent=view.length+' of '+F.length+' features \u00b7 page '+(page+1)+'/'+pages;}
function update(){var q=$('q').value.trim().toLowerCase();
 view=F.filter(function(f){return !q||text(f).indexOf(q)>=0;});view.sort(sorts[$('sort').value]||sorts.id);page=0;render();}
function openHash(){var q=/^#q=(.*)$/.exec(location.hash);if(q){$('q').value=decodeURIComponent(q[1]);update();return;}
 var m=/^#feature-(\d+)$/.exec(location.hash);if(!m)return;var id=+m[1],k=-1;
 for(var i=0;i<view.length;i++)if(view[i].i===id)k=i;if(k<0){$('q').value='';update();for(i=0;i<view.length;i++)if(view[i].i===id)k=i;}
 if(k<0)return;page=Math.floor(k/P);render();var d=$('feature-'+id);d.open=true;body(view[k],d);d.scrollIntoView();}
$('q').addEventListener('input',update);$('sort').addEventListener('change',update);
$('prev').addEventListener('click',function(){page--;render();});$('next').addEventListener('click',function(){page++;render();});
window.addEventListener('hashchange',openHash);
update();
if(location.hash)openHash();if(!/^#feature-/.test(location.hash)){var first=document.querySelector('#list details');if(first){first.open=true;body(view[0],first);}}
var st=$('status');if(st.getAttribute('data-state')==='loading'){st.textContent='ok: '+F.length+' features';st.setAttribute('data-state','ok');}
})();
