#!/usr/bin/env python3
"""Prints one line per tensor of a GGUF file: name, ggml type name, sha256 (first 16 hex) of its data bytes."""
import struct, sys, hashlib
TYPES = {0:"F32",1:"F16",2:"Q4_0",3:"Q4_1",6:"Q5_0",7:"Q5_1",8:"Q8_0",9:"Q8_1",10:"Q2_K",11:"Q3_K",12:"Q4_K",13:"Q5_K",14:"Q6_K",15:"Q8_K",16:"IQ2_XXS",17:"IQ2_XS",18:"IQ3_XXS",19:"IQ1_S",20:"IQ4_NL",21:"IQ3_S",22:"IQ2_S",23:"IQ4_XS",30:"BF16"}
GEOM = {0:(1,4),1:(1,2),30:(1,2),2:(32,18),3:(32,20),6:(32,22),7:(32,24),8:(32,34),10:(256,84),11:(256,110),12:(256,144),13:(256,176),14:(256,210),20:(32,18),23:(256,136)}
f = open(sys.argv[1], "rb"); data = f.read()
pos = 0
def rd(fmt):
    global pos
    v = struct.unpack_from("<" + fmt, data, pos); pos += struct.calcsize("<" + fmt); return v[0]
def rstr():
    global pos
    n = rd("Q"); s = data[pos:pos+n].decode(); pos += n; return s
SIZES = {0:"B",1:"b",2:"H",3:"h",4:"I",5:"i",6:"f",7:"?",10:"Q",11:"q",12:"d"}
def rval(t):
    if t == 8: return rstr()
    if t == 9:
        et = rd("I"); n = rd("Q"); return [rval(et) for _ in range(n)]
    return rd(SIZES[t])
assert data[:4] == b"GGUF"; pos = 4
ver = rd("I"); nt = rd("Q"); nkv = rd("Q")
align = 32
for _ in range(nkv):
    k = rstr(); t = rd("I"); v = rval(t)
    if k == "general.alignment": align = v
infos = []
for _ in range(nt):
    name = rstr(); nd = rd("I"); dims = [rd("Q") for _ in range(nd)]; t = rd("I"); off = rd("Q")
    infos.append((name, dims, t, off))
start = (pos + align - 1) // align * align
for name, dims, t, off in infos:
    n = 1
    for d in dims: n *= d
    bs, bb = GEOM[t]
    size = n // bs * bb
    h = hashlib.sha256(data[start+off:start+off+size]).hexdigest()[:16]
    print(f"{name} {TYPES[t]} {h}")
