window.onerror=function(m,u,l){var s=document.getElementById('status');if(s){s.textContent='error: '+m+' (line '+l+')';s.setAttribute('data-state','error');}};
