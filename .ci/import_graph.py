#!/usr/bin/env python3
"""The import graph of src/, read off the `use` lines and `crate::` paths
(test modules left out): prints its size and fails on any circle."""
import os,re,sys
root=sys.argv[1] if len(sys.argv)>1 else os.path.join(os.path.dirname(__file__), '..', 'src')
mods={}
for d,_,fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'): continue
        p=os.path.join(d,f); rel=os.path.relpath(p,root)[:-3]
        parts=rel.split('/')
        if parts[-1] in ('mod','lib','main'): parts=parts[:-1]
        mods['::'.join(parts)]=p
def resolve(cur, path):
    segs=path.split('::')
    if segs[0]=='crate': base=[]; segs=segs[1:]
    elif segs[0]=='super':
        base=cur.split('::') if cur else []
        while segs and segs[0]=='super': base=base[:-1]; segs=segs[1:]
    elif segs[0]=='self': base=cur.split('::') if cur else []; segs=segs[1:]
    else: return None
    best=None
    for i in range(len(segs),-1,-1):
        m='::'.join(base+segs[:i])
        if m in mods: best=m; break
    return best
edges={m:set() for m in mods}
for m,p in mods.items():
    text=open(p).read()
    # drop test modules
    text=re.split(r'#\[cfg\(test\)\]\s*mod tests', text)[0]
    for u in re.findall(r'^\s*(?:pub(?:\([^)]*\))? )?use\s+([^;]+);', text, re.M):
        u=re.sub(r'\s+','',u)
        def expand(prefix, rest):
            if rest.startswith('{'):
                depth=0; cur=''; out=[]
                for ch in rest[1:-1]+',':
                    if ch=='{': depth+=1
                    if ch=='}': depth-=1
                    if ch==',' and depth==0:
                        if cur: out+=expand(prefix, cur)
                        cur=''
                    else: cur+=ch
                return out
            if '::{' in rest:
                a,b=rest.split('::{',1)
                return expand(prefix+a+'::','{'+b)
            return [prefix+rest]
        for path in expand('',u):
            path=re.sub(r'(::self)?(as\w+)?$','',path)
            t=resolve(m,path)
            if t is not None and t!=m: edges[m].add(t)
    for q in re.findall(r'\b(crate(?:::\w+)+)', text):
        t=resolve(m,q)
        if t is not None and t!=m: edges[m].add(t)
sys.setrecursionlimit(10000)
idx={};low={};st=[];on=set();sccs=[];c=[0]
def sc(v):
    idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
    for w in edges[v]:
        if w not in idx: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],idx[w])
    if low[v]==idx[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        sccs.append(comp)
for v in edges:
    if v not in idx: sc(v)
cyc=[s for s in sccs if len(s)>1]
print(len(mods), 'modules,', sum(len(e) for e in edges.values()), 'imports; circles:', cyc if cyc else 'none')
sys.exit(1 if cyc else 0)
