"""What vocoders of other sizes would cost here: random-weight ONNX graphs of
published HiFi-GAN sizes (V1 = the universal one Manifold uses, V2, V3) and
of iSTFTNet's layout (two x8 upsampling stages, then a 16-point inverse STFT
with hop 4, as a transposed convolution) at three widths, each run on 8 s
of mel frames in one call with 1 and 2 ONNX Runtime threads, one after
another in one process. Only the times mean anything (the weights are
random). Graphs go to /tmp/vocoder_sizes.

usage: python vocoder_sizes.py
Needs numpy, onnx and onnxruntime.
"""
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_rvc_realsize as m  # noqa: E402  (its small graph builder)

def resblock2(g,x,c,k):
    for d in (1,3):
        t=g.conv(g.lrelu(x,0.1),c,c,k,dilation=d); x=g.op("Add",[t,x])
    return x
def vocoder(path, ch, rates, kernels, rks, rb=1, istft=None):
    g=m.G(); x=g.conv("mel",80,ch,7)
    for i,(u,k) in enumerate(zip(rates,kernels)):
        ci,c=ch>>i,ch>>(i+1); x=g.lrelu(x,0.1)
        x=g.op("ConvTranspose",[x,g.w([ci,c,k],fan_in=ci),g.zeros([c])],kernel_shape=[k],strides=[u],pads=[(k-u)//2,(k-u)//2])
        br=[(g.resblock1(x,c,rk) if rb==1 else resblock2(g,x,c,rk)) for rk in rks]
        x=g.op("Mul",[g.op("Sum",br),g.const(np.array(1/len(rks),np.float32))])
    c=ch>>len(rates); x=g.lrelu(x,0.01)
    if istft:  # n_fft, hop: conv to magnitude+phase, then inverse DFT as a ConvTranspose
        n,h=istft; bins=n//2+1
        spec=g.conv(x,c,2*bins,7)
        mag,ph=g.ops("Split",[spec,g.ints([bins,bins])],2,axis=1)
        mag=g.op("Exp",[mag]); re=g.op("Mul",[mag,g.op("Cos",[ph])]); im=g.op("Mul",[mag,g.op("Sin",[ph])])
        z=g.op("Concat",[re,im],axis=1)
        K=np.random.randn(2*bins,1,n).astype(np.float32)/n
        x=g.op("ConvTranspose",[z,g.const(K)],kernel_shape=[n],strides=[h],pads=[(n-h)//2,(n-h)//2])
    else:
        x=g.conv(x,c,1,7,bias=False)
    g.nodes.append(helper.make_node("Tanh",[x],["audio"]))
    m.save(g,[helper.make_tensor_value_info("mel",TensorProto.FLOAT,[1,80,"T"])],[helper.make_tensor_value_info("audio",TensorProto.FLOAT,[1,1,"S"])],path,"v")
cands={
 'v1':(512,[8,8,2,2],[16,16,4,4],[3,7,11],1,None),
 'v2':(128,[8,8,2,2],[16,16,4,4],[3,7,11],1,None),
 'v3':(256,[8,8,4],[16,16,8],[3,5,7],2,None),
 'istft_c8c8_512':(512,[8,8],[16,16],[3,7,11],1,(16,4)),
 'istft_c8c8_256':(256,[8,8],[16,16],[3,7,11],1,(16,4)),
 'istft_c8c8_128':(128,[8,8],[16,16],[3,7,11],1,(16,4)),
}
mel=(np.random.randn(1,80,int(8*22050/256)).astype(np.float32)-5)
for name,c in cands.items():
    os.makedirs('/tmp/vocoder_sizes', exist_ok=True); p=f'/tmp/vocoder_sizes/{name}.onnx'; vocoder(p,*c)
    for th in (1,2):
        o=ort.SessionOptions(); o.intra_op_num_threads=th; s=ort.InferenceSession(p,o,providers=['CPUExecutionProvider'])
        s.run(None,{'mel':mel[:,:,:16]}); t=time.perf_counter(); a=s.run(None,{'mel':mel})[0]
        assert a.shape[2]==mel.shape[2]*256, a.shape
        print(name, 'threads',th,'RTF %.3f'%((time.perf_counter()-t)/8), flush=True)
