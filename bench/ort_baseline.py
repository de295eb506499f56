"""onnxruntime baseline for the SmolLM2-135M-shaped Llama: full forward at T = 1, 16, 128 on
the dynamo-exported ONNX (bench/make_smollm_shape.py), 2 intra-op threads, median / min / p90
over repeated runs after warm-up, plus peak resident memory.

    python bench/ort_baseline.py /tmp/smol/onnx/model.onnx [--threads 2] [--iters 20] [--past 0]

Models with the inputs of an optimum decoder export (`attention_mask`, `position_ids`,
`past_key_values.N.key/value`) get them too: a mask of ones, positions past..past+T, and a
cache of `--past` random positions (so `--past 128 --seqs 1` times a KV-cache decode step).
Needs onnxruntime and numpy (pip install onnxruntime numpy).
"""
import argparse
import resource
import statistics
import time

import numpy as np
import onnxruntime as ort


def decoder_feeds(session, rng, seq, past):
    """Inputs for one batch-1 step of `seq` tokens after `past` cached ones."""
    feeds = {}
    for i in session.get_inputs():
        if i.name == "input_ids":
            feeds[i.name] = rng.integers(0, 49152, size=(1, seq), dtype=np.int64)
        elif i.name == "attention_mask":
            feeds[i.name] = np.ones((1, past + seq), np.int64)
        elif i.name == "position_ids":
            feeds[i.name] = np.arange(past, past + seq, dtype=np.int64).reshape(1, seq)
        elif i.name.startswith("past_key_values"):
            heads, head_dim = i.shape[1], i.shape[3]
            feeds[i.name] = rng.standard_normal((1, heads, past, head_dim)).astype(np.float32)
        else:
            raise SystemExit(f"error: no rule for input `{i.name}`")
    return feeds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seqs", default="1,16,128")
    ap.add_argument("--past", type=int, default=0)
    args = ap.parse_args()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    start = time.perf_counter()
    session = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - start
    print(f"onnxruntime {ort.__version__}, {args.threads} threads, session load {load_s:.2f} s")
    rng = np.random.default_rng(0)
    print(f"{'T':>5} {'median ms':>10} {'min ms':>8} {'p90 ms':>8}")
    for seq in [int(s) for s in args.seqs.split(",")]:
        feeds = decoder_feeds(session, rng, seq, args.past)
        for _ in range(args.warmup):
            session.run(None, feeds)
        times = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            session.run(None, feeds)
            times.append((time.perf_counter() - t0) * 1e3)
        times.sort()
        p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
        print(f"{seq:>5} {statistics.median(times):>10.2f} {times[0]:>8.2f} {p90:>8.2f}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
