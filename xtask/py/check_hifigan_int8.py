"""Does int8 pay for HiFi-GAN here? Static quantisation (ONNX Runtime's
quantize_static, QOperator and QDQ formats, per-channel int8 weights, uint8
activations) of the whole-file graph, calibrated on 6 prompts of the
real-voice set (Allison, June, Carlo); real-time factor on 8 s of Allison's
reference (one thread) and log-mel distance to the fp32 output.

usage: python check_hifigan_int8.py   (from the repository root, after
`cargo bench --bench voice` made target/bench-voice-real/set)
Needs numpy, onnx and onnxruntime.
"""
import os, sys, time
import numpy as np
import onnxruntime as ort
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_hifigan_stream as v  # noqa: E402
from onnxruntime.quantization import quantize_static, CalibrationDataReader, QuantType, QuantFormat
from onnxruntime.quantization.shape_inference import quant_pre_process
src='target/manifold-data/models/hifigan_universal/hifigan_universal.onnx'
cal=[v.log_mel(v.read_wav(f'target/bench-voice-real/set/{s}/judge_{k}.wav'))[None] for s in ['allison','june','carlo'] for k in range(2)]
class R(CalibrationDataReader):
    def __init__(s): s.it=iter([{'mel':m} for m in cal])
    def get_next(s): return next(s.it,None)
os.makedirs('/tmp/hifigan_int8', exist_ok=True)
quant_pre_process(src,'/tmp/hifigan_int8/pre.onnx',skip_symbolic_shape=True)
for fmt,name in [(QuantFormat.QOperator,'qop'),(QuantFormat.QDQ,'qdq')]:
    quantize_static('/tmp/hifigan_int8/pre.onnx',f'/tmp/hifigan_int8/whole_{name}.onnx',R(),quant_format=fmt,activation_type=QuantType.QUInt8,weight_type=QuantType.QInt8,per_channel=True)
x=v.read_wav('target/bench-voice-real/set/allison/reference.wav')[:22050*8]; mel=v.log_mel(x)[None]
def run(p,th=1):
    o=ort.SessionOptions(); o.intra_op_num_threads=th; s=ort.InferenceSession(p,o,providers=['CPUExecutionProvider'])
    s.run(None,{'mel':mel[:,:,:20]}); t=time.perf_counter(); y=s.run(None,{'mel':mel})[0].reshape(-1); return y,(time.perf_counter()-t)/(len(x)/22050)
ref,rt=run(src); print('fp32 RTF %.3f'%rt)
mr=v.log_mel(ref); loud=mr.mean(0)>mr.mean(0).max()-5
for name in ['qop','qdq']:
    y,r=run(f'/tmp/hifigan_int8/whole_{name}.onnx'); my=v.log_mel(y)
    print(name,'RTF %.3f'%r,'log-mel dist %.2f dB'%(np.mean(np.abs(my-mr)[:,loud])*20/np.log(10)))
